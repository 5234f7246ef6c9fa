"""Rollback policy: "rollback first, debug second", without flapping.

On a critical ``trigger`` alert about the model's *production* version, ``on_alert`` decides a rollback to the
registry's rollback target (the version promoted before it), at most once per incident (model, version), and
never back to a version that was itself rolled back, and never for a ``data_quality`` alert (broken sensors are not
fixed by another model version). ``on_ack`` / ``overdue`` track the scorers' acks so the
monitor can re-alert when none arrive. Modes: ``alert_only``, ``rollback``, ``pause_challenger``.

Example:
    >>> from types import SimpleNamespace as NS
    >>> class Reg:
    ...     def production(self, model): return NS(version=2)
    ...     def rollback_target(self, model, exclude=()): return NS(version=1)
    >>> policy = RollbackPolicy(Reg(), mode="rollback")
    >>> alert = NS(action="trigger", severity="critical", model="m", model_version=2, summary="psi", kind="data_drift",
    ...            dedup_key="k", value=0.4, feature="hr")
    >>> d = policy.on_alert(alert, now_ms=0)
    >>> (d.command, d.from_version, d.to_version)
    ('rollback', 2, 1)
    >>> policy.on_alert(alert, now_ms=1) is None   # one rollback per incident
    True
    >>> RollbackPolicy(Reg(), mode="rollback").on_alert(NS(**{**vars(alert), "kind": "data_quality"}), 0) is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Mode = Literal["alert_only", "rollback", "pause_challenger"]
NEVER_ROLLS_BACK = frozenset({"data_quality"})
"""Alert kinds no rollback can fix: broken sensors feed every version the same bad readings."""


class _Registry(Protocol):
    def production(self, model: str) -> Any: ...

    def rollback_target(self, model: str, *, exclude: Any = ()) -> Any: ...


@dataclass(frozen=True)
class Decision:
    command: str  # rollback | set_traffic
    model: str
    from_version: int
    to_version: int | None
    reason: str
    evidence: dict[str, Any]
    traffic: dict[str, Any] | None = None


@dataclass
class PendingCommand:
    command_id: str
    decision: Decision
    issued_at: int
    acks: dict[str, str] = field(default_factory=dict)  # instance -> status
    realerted: bool = False


class RollbackPolicy:
    def __init__(self, registry: _Registry, *, mode: Mode = "rollback", ack_timeout_s: float = 30.0) -> None:
        self.registry = registry
        self.mode = mode
        self.ack_timeout_ms = int(ack_timeout_s * 1000)
        self.rolled_back: dict[str, set[int]] = {}
        self.pending: dict[str, PendingCommand] = {}
        self._handled: set[tuple[str, int]] = set()

    def on_alert(self, alert: Any, now_ms: int) -> Decision | None:
        """A decision for a critical trigger on the production version, else ``None``."""
        if (self.mode == "alert_only" or alert.action != "trigger" or alert.severity != "critical"
                or alert.kind in NEVER_ROLLS_BACK):
            return None
        incident = (alert.model, int(alert.model_version))
        prod = self.registry.production(alert.model)
        if incident in self._handled or prod is None or prod.version != alert.model_version:
            return None
        evidence = {"alert_id": getattr(alert, "alert_id", ""), "dedup_key": alert.dedup_key, "kind": alert.kind,
                    "feature": alert.feature, "value": alert.value}
        if self.mode == "pause_challenger":
            self._handled.add(incident)
            return Decision("set_traffic", alert.model, prod.version, None, alert.summary, evidence,
                            traffic={"challenger": None, "canary_pct": 0.0, "shadow": False})
        excluded = self.rolled_back.get(alert.model, set())
        target = self.registry.rollback_target(alert.model, exclude=excluded | {prod.version})
        if target is None:
            return None
        self._handled.add(incident)
        self.rolled_back.setdefault(alert.model, set()).add(prod.version)
        return Decision("rollback", alert.model, prod.version, target.version, alert.summary, evidence)

    def issued(self, command_id: str, decision: Decision, now_ms: int) -> None:
        self.pending[command_id] = PendingCommand(command_id, decision, now_ms)

    def on_ack(self, ack_for: str, instance: str, status: str) -> PendingCommand | None:
        pending = self.pending.get(ack_for)
        if pending is not None:
            pending.acks[instance] = status
        return pending

    def overdue(self, now_ms: int) -> list[PendingCommand]:
        """Commands with no ack after the timeout (each reported once)."""
        late = [p for p in self.pending.values()
                if not p.acks and not p.realerted and now_ms - p.issued_at > self.ack_timeout_ms]
        for p in late:
            p.realerted = True
        return late
