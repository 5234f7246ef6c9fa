"""Control keys with ids: the key that signs, the keys that verify during a rotation (pure; no I/O).

A signed command names its key in ``key_id``. A :class:`Keyring` holds the *current* key (it signs, and it
verifies) and, during a rotation, one *previous* key (it only verifies). Any other ``key_id`` is unknown and
refused. A key's id is either configured or derived from the key (``k`` + 12 hex digits of a SHA-256 over a
fixed label and the key), so processes that share a key agree on its id without configuring one; the id says
nothing useful about the key (every signed command already carries an HMAC of a known body under it).

Keys never appear in ``repr``, ``str`` or logs: a :class:`ControlKey` prints its id only.

Example:
    >>> ring = Keyring.of(b"new-key-32-bytes-long-0123456789", key_id="2024-06",
    ...                   previous=b"old-key-32-bytes-long-0123456789", previous_id="2024-01")
    >>> ring.signing.key_id, ring.accepted_ids
    ('2024-06', ('2024-06', '2024-01'))
    >>> ring.for_id("2024-01").key_id
    '2024-01'
    >>> ring.for_id("2023-07")
    Traceback (most recent call last):
    ...
    streams.exceptions.ControlError: unknown key id '2023-07' (this worker accepts 2024-06, 2024-01)
    >>> ring
    Keyring(signing='2024-06', previous='2024-01')
    >>> derive_key_id(b"k" * 32)
    'k8097e91e4084'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from streams.exceptions import ControlError

KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_LABEL = b"driftline control key id\x00"


def derive_key_id(key: bytes) -> str:
    """The id of ``key`` when none is configured: stable, short, one-way."""
    return "k" + hashlib.sha256(_LABEL + key).hexdigest()[:12]


@dataclass(frozen=True)
class ControlKey:
    """One HMAC key and its id; ``repr`` shows the id only."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise ControlError("no control key configured: set DRIFTLINE_CONTROL_KEY (or run `driftline up`)")
        if not KEY_ID_RE.match(self.key_id):
            raise ControlError(f"invalid control key id {self.key_id!r}: 1-64 of letters, digits, '.', '_', ':', '-'")

    @classmethod
    def of(cls, secret: bytes, key_id: str = "") -> ControlKey:
        """``secret`` with ``key_id``, or with its derived id when ``key_id`` is empty."""
        return cls(key_id or derive_key_id(secret), secret)


@dataclass(frozen=True)
class Keyring:
    """The current key (signs and verifies) and an optional previous key (verifies only, during a rotation)."""

    signing: ControlKey
    previous: ControlKey | None = None

    def __post_init__(self) -> None:
        if self.previous is not None and self.previous.key_id == self.signing.key_id:
            raise ControlError(f"the current and the previous control key share the id {self.signing.key_id!r}; "
                               "give the new key its own DRIFTLINE_CONTROL_KEY_ID")

    @classmethod
    def of(cls, current: bytes, key_id: str = "", previous: bytes = b"", previous_id: str = "") -> Keyring:
        """A keyring from raw keys; empty ids are derived from the keys."""
        return cls(ControlKey.of(current, key_id), ControlKey.of(previous, previous_id) if previous else None)

    @property
    def accepted_ids(self) -> tuple[str, ...]:
        """Key ids a command may name, current first."""
        return (self.signing.key_id,) + (() if self.previous is None else (self.previous.key_id,))

    def for_id(self, key_id: object) -> ControlKey:
        """The key a command's ``key_id`` names; :class:`ControlError` for a missing or unknown id."""
        if not isinstance(key_id, str) or not key_id:
            raise ControlError("missing key_id: commands must name the key that signed them")
        for key in (self.signing, self.previous):
            if key is not None and key.key_id == key_id:
                return key
        raise ControlError(f"unknown key id {key_id[:64]!r} (this worker accepts {', '.join(self.accepted_ids)})")

    def __repr__(self) -> str:
        prev = None if self.previous is None else self.previous.key_id
        return f"Keyring(signing={self.signing.key_id!r}, previous={prev!r})"


def keyring_from_settings(settings: object) -> Keyring:
    """The keyring a :class:`streams.settings.Settings` describes (``control_key`` and friends)."""
    return Keyring.of(str(getattr(settings, "control_key", "")).encode(),
                      str(getattr(settings, "control_key_id", "")),
                      str(getattr(settings, "control_previous_key", "")).encode(),
                      str(getattr(settings, "control_previous_key_id", "")))
