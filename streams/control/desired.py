"""A model's desired state and the state machine that commands drive (pure; no I/O).

The desired state is what every scorer of the model must serve: the champion ``version``, the traffic split
(``challenger``, ``canary_pct``, ``shadow``) and ``paused``. It lives in the control store (Redis), so a scorer
that starts or restarts serves it instead of whatever it would pick by itself. Every applied command makes a
new ``revision`` and names itself (``command_id``, ``issued_by``, ``reason``, ``alert_id``, ``issued_at``).

:func:`decide` is the whole state machine. In order, a command is

* ``replayed`` when it is the command that made the current state (a second copy of the last command);
* ``superseded`` when it was issued before the command that made the current state (``issued_at`` is older:
  a delayed or re-delivered old rollback must not undo a newer promote), or when its ``from_version`` (the
  champion its issuer meant to replace) is no longer the desired champion;
* ``invalid`` when it cannot apply (no version to roll back to, a rollback to the version already desired,
  a malformed traffic split);
* otherwise ``applied``: rollback / promote / reload set the champion and clear the traffic split,
  set_traffic sets the split, pause / resume set ``paused``.

Example:
    >>> from streams.control.protocol import Command
    >>> def cmd(kind, at, cid, **kw):
    ...     return Command(cid, kind, "m", kw.pop("to_version", None), kw.pop("traffic", None), "", "ana", at, **kw)
    >>> s0 = DesiredState().with_baseline(2)
    >>> v = decide(s0, cmd("rollback", 100, "c1"), to_version=1, now_ms=101)
    >>> v.status, v.state.version, v.state.revision
    ('applied', 1, 1)
    >>> v2 = decide(v.state, cmd("promote", 200, "c2"), to_version=2, now_ms=201)
    >>> decide(v2.state, cmd("rollback", 150, "c3"), to_version=1, now_ms=202).reason   # issued before c2
    'superseded'
    >>> decide(v2.state, cmd("promote", 200, "c2"), to_version=2, now_ms=203).reason    # c2 again
    'replayed'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from streams.control.protocol import Command

VERSION_COMMANDS = frozenset({"rollback", "promote", "reload"})
STATE_COMMANDS = VERSION_COMMANDS | {"set_traffic", "pause", "resume"}


@dataclass(frozen=True)
class DesiredState:
    """What the model's scorers must serve, and the command that decided it (``revision`` 0: no command yet)."""

    revision: int = 0
    version: int | None = None
    challenger: int | None = None
    canary_pct: float = 0.0
    shadow: bool = False
    paused: bool = False
    command_id: str = ""
    command: str = ""
    issued_at: int = 0
    issued_by: str = ""
    reason: str = ""
    alert_id: str = ""
    key_id: str = ""
    applied_at: int = 0
    decided_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesiredState:
        """Inverse of :meth:`to_dict`; unknown fields are ignored (a newer writer may add some)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_baseline(self, version: int | None) -> DesiredState:
        """Before any command (revision 0) the champion is the registry's production version."""
        return replace(self, version=version) if self.revision == 0 else self

    @property
    def traffic(self) -> dict[str, Any]:
        return {"challenger": self.challenger, "canary_pct": self.canary_pct, "shadow": self.shadow}


@dataclass(frozen=True)
class Verdict:
    """The outcome of one command: ``applied`` (``state`` is the new state) or ``rejected`` with a ``reason``
    (``replayed`` | ``superseded`` | ``invalid``) and a ``detail`` for the operator (``state`` unchanged)."""

    status: str
    reason: str
    detail: str
    state: DesiredState

    @property
    def applied(self) -> bool:
        return self.status == "applied"


def order_conflict(state: DesiredState, cmd: Command) -> tuple[str, str] | None:
    """``(reason, detail)`` when ``cmd`` may not apply after ``state`` because of ordering, else ``None``."""
    if state.revision and cmd.command_id == state.command_id:
        return "replayed", f"command {cmd.command_id} already made revision {state.revision}"
    if state.revision and cmd.issued_at < state.issued_at:
        return "superseded", (f"issued at {cmd.issued_at}, before {state.command} {state.command_id} "
                              f"(issued at {state.issued_at}) which the model follows now")
    if (cmd.from_version is not None and cmd.command in VERSION_COMMANDS and state.version is not None
            and cmd.from_version != state.version):
        since = f" (since {state.command} {state.command_id})" if state.revision else ""
        return "superseded", f"meant to replace v{cmd.from_version}, but v{state.version} is desired now{since}"
    return None


def decide(state: DesiredState, cmd: Command, *, to_version: int | None, now_ms: int,
           decided_by: str = "") -> Verdict:
    """Apply ``cmd`` to ``state``. ``to_version`` is the command's champion already resolved by the caller
    (a rollback without a version: the registry's rollback target; a reload without one: the registry's
    production version); it is ignored by set_traffic / pause / resume."""
    conflict = order_conflict(state, cmd)
    if conflict is not None:
        return Verdict("rejected", conflict[0], conflict[1], state)
    if cmd.command not in STATE_COMMANDS:
        return Verdict("rejected", "invalid", f"{cmd.command} does not change a scorer", state)
    try:
        changes = _changes(state, cmd, to_version)
    except ValueError as exc:
        return Verdict("rejected", "invalid", str(exc), state)
    new = replace(state, **changes, revision=state.revision + 1, command_id=cmd.command_id, command=cmd.command,
                  issued_at=cmd.issued_at, issued_by=cmd.issued_by, reason=cmd.reason[:500],
                  alert_id=cmd.alert_id, key_id=cmd.key_id, applied_at=now_ms, decided_by=decided_by)
    return Verdict("applied", "", "", new)


def _changes(state: DesiredState, cmd: Command, to_version: int | None) -> dict[str, Any]:
    if cmd.command in VERSION_COMMANDS:
        if to_version is None:
            raise ValueError(f"{cmd.command}: no version to serve (give to_version)")
        if cmd.command == "rollback" and to_version == state.version:
            raise ValueError(f"rollback: v{to_version} is already the desired version; pick another one")
        return {"version": int(to_version), "challenger": None, "canary_pct": 0.0, "shadow": False}
    if cmd.command == "set_traffic":
        return parse_traffic(cmd.traffic, champion=state.version)
    return {"paused": cmd.command == "pause"}


def parse_traffic(traffic: object, *, champion: int | None) -> dict[str, Any]:
    """A command's ``traffic`` as state fields; ``ValueError`` saying what is wrong.

    Example:
        >>> parse_traffic({"challenger": 3, "canary_pct": 10}, champion=2)
        {'challenger': 3, 'canary_pct': 10.0, 'shadow': False}
        >>> parse_traffic({"challenger": 3, "canary_pct": 101}, champion=2)
        Traceback (most recent call last):
        ...
        ValueError: set_traffic: canary_pct must be a number from 0 to 100, got 101
    """
    if not isinstance(traffic, Mapping):
        raise ValueError(f"set_traffic: traffic must be an object, got {type(traffic).__name__}")
    challenger = traffic.get("challenger")
    if challenger is not None and (isinstance(challenger, bool) or not isinstance(challenger, int) or challenger < 1):
        raise ValueError(f"set_traffic: challenger must be a version number or null, got {challenger!r}")
    pct = traffic.get("canary_pct", 0.0)
    if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not math.isfinite(pct) or not 0 <= pct <= 100:
        raise ValueError(f"set_traffic: canary_pct must be a number from 0 to 100, got {pct!r}")
    shadow = traffic.get("shadow", False)
    if not isinstance(shadow, bool):
        raise ValueError(f"set_traffic: shadow must be true or false, got {shadow!r}")
    if challenger is not None and challenger == champion:
        raise ValueError(f"set_traffic: v{challenger} is the champion; a challenger must be another version")
    if challenger is None:
        return {"challenger": None, "canary_pct": 0.0, "shadow": False}
    return {"challenger": int(challenger), "canary_pct": float(pct), "shadow": shadow}


def history_entry(before: DesiredState, after: DesiredState, cmd: Command) -> dict[str, Any]:
    """One line of the model's control history: who changed what, why, and when.

    Example:
        >>> from streams.control.protocol import Command
        >>> c = Command("c1", "rollback", "m", 1, None, "psi 0.4", "monitor", 100, {"alert_id": "a9"})
        >>> after = decide(DesiredState().with_baseline(2), c, to_version=1, now_ms=105).state
        >>> e = history_entry(DesiredState().with_baseline(2), after, c)
        >>> (e["command"], e["from_version"], e["version"], e["alert_id"], e["revision"])
        ('rollback', 2, 1, 'a9', 1)
    """
    return {"revision": after.revision, "command_id": cmd.command_id, "command": cmd.command,
            "issued_by": cmd.issued_by, "reason": cmd.reason[:500], "alert_id": cmd.alert_id,
            "issued_at": cmd.issued_at, "applied_at": after.applied_at, "decided_by": after.decided_by,
            "key_id": cmd.key_id, "from_version": before.version, "version": after.version,
            "traffic": after.traffic, "paused": after.paused}
