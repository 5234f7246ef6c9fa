"""Champion/challenger routing by a stable hash of the entity id.

Each entity id maps to a bucket in ``[0, 1)`` (blake2b of the salt and the id, so the same in every
process and on every machine, unlike Python's randomised ``hash``). An entity is served by the challenger
when its bucket is below ``canary_pct / 100``; raising the canary share therefore only ever moves entities
from the champion to the challenger, never back and forth. In shadow mode the challenger also scores every
event the champion serves; those predictions carry the variant ``"shadow"`` and are never served.

Example:
    >>> split = TrafficSplit(champion=3, challenger=4, canary_pct=10.0, shadow=True)
    >>> served, *extra = route("patient-42", split)
    >>> served.variant in ("champion", "challenger")
    True
    >>> route("patient-42", split) == route("patient-42", split)
    True
    >>> route("patient-42", TrafficSplit(champion=3))
    [Assignment(version=3, variant='champion')]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.exceptions import RoutingError

__all__ = ["traffic_bucket", "TrafficSplit", "Assignment", "route"]

_SCALE = float(1 << 53)


def traffic_bucket(entity_id: str, salt: str = "") -> float:
    """A stable number in ``[0, 1)`` for ``entity_id``, uniform over ids, different per ``salt``.

    >>> traffic_bucket("patient-42") == traffic_bucket("patient-42")
    True
    >>> 0.0 <= traffic_bucket("patient-42", salt="exp-7") < 1.0
    True
    """
    salt_b = salt.encode("utf-8")
    # length-prefix the salt so ("ab", "c") and ("a", "bc") never collide
    payload = len(salt_b).to_bytes(4, "big") + salt_b + entity_id.encode("utf-8")
    digest = hashlib.blake2b(payload, digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / _SCALE  # top 53 bits: exact in a float, < 1.0


@dataclass(frozen=True)
class TrafficSplit:
    """Which versions serve traffic: a champion, optionally a challenger on a canary share and/or in shadow."""

    champion: int
    challenger: int | None = None
    canary_pct: float = 0.0
    shadow: bool = False
    salt: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.canary_pct) or not 0.0 <= self.canary_pct <= 100.0:
            raise RoutingError(f"canary_pct must be within 0..100, got {self.canary_pct!r}")
        if self.challenger is not None and self.challenger == self.champion:
            raise RoutingError(f"challenger and champion are both v{self.champion}; pick two different versions")

    def to_dict(self) -> dict[str, Any]:
        """The ``traffic`` field of a ``set_traffic`` control command."""
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "canary_pct": self.canary_pct,
            "shadow": self.shadow,
            "salt": self.salt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrafficSplit:
        """Inverse of :meth:`to_dict`; missing optional keys take their defaults.

        >>> TrafficSplit.from_dict({"champion": 2, "challenger": 3, "canary_pct": 5})
        TrafficSplit(champion=2, challenger=3, canary_pct=5.0, shadow=False, salt='')
        """
        try:
            challenger = data.get("challenger")
            return cls(
                champion=int(data["champion"]),
                challenger=None if challenger is None else int(challenger),
                canary_pct=float(data.get("canary_pct", 0.0)),
                shadow=bool(data.get("shadow", False)),
                salt=str(data.get("salt", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RoutingError):
                raise
            raise RoutingError(f"malformed traffic split {dict(data)!r}: {exc!r}") from exc


@dataclass(frozen=True)
class Assignment:
    """One model version that scores an event, and in which role."""

    version: int
    variant: str  # "champion" | "challenger" | "shadow"


def route(entity_id: str, split: TrafficSplit) -> list[Assignment]:
    """The versions that score an event of ``entity_id``: the served one first, then a shadow if any.

    Exactly one assignment is served (``champion`` or ``challenger``). When shadow mode is on and the
    champion serves, the challenger is added with the variant ``shadow``. Without a challenger, the champion
    serves everything (``canary_pct`` and ``shadow`` are ignored). Deterministic per entity and split.

    >>> split = TrafficSplit(champion=1, challenger=2, canary_pct=100.0)
    >>> route("anyone", split)
    [Assignment(version=2, variant='challenger')]
    >>> route("anyone", TrafficSplit(champion=1, challenger=2, shadow=True))
    [Assignment(version=1, variant='champion'), Assignment(version=2, variant='shadow')]
    """
    challenger = split.challenger
    if challenger is None:
        return [Assignment(split.champion, "champion")]
    if split.canary_pct > 0.0 and traffic_bucket(entity_id, split.salt) < split.canary_pct / 100.0:
        return [Assignment(challenger, "challenger")]
    if split.shadow:
        return [Assignment(split.champion, "champion"), Assignment(challenger, "shadow")]
    return [Assignment(split.champion, "champion")]
