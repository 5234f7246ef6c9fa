"""The alert policy: turns a stream of statistic values into trigger / resolve verdicts.

One small state machine per dedup key. It applies, in order:

- **inconclusive**: a NaN value or ``n < min_samples`` is reported by :meth:`AlertPolicy.status` but never
  triggers nor resolves anything, and does not break or extend a streak (NaN is not 0);
- **hysteresis**: ``trigger_after`` consecutive conclusive evaluations at/above a level to open (or escalate
  warning -> critical), ``resolve_after`` consecutive evaluations below *warning* to resolve;
- **dedup**: while an incident is open the same severity is never sent again, and a drop from critical to
  warning sends nothing (only escalation re-triggers);
- **cooldown**: after a resolve, no new trigger for the same key before ``cooldown_ms`` (streaks keep
  counting, so a still-bad key triggers as soon as the cooldown ends);
- **retirement**: :meth:`AlertPolicy.retire` closes the keys of something that stopped existing (a model
  version no longer served), the one close that needs no evaluation.

Example:
    >>> pol = AlertPolicy(PolicyConfig(min_samples=10, trigger_after=2, resolve_after=2, cooldown_ms=0))
    >>> [pol.observe("k", v, n=100, now_ms=t) for t, v in enumerate([0.3, 0.3])][-1]
    Verdict(action='trigger', severity='critical', value=0.3, threshold=0.25)
    >>> pol.observe("k", float("nan"), n=100, now_ms=2), pol.status("k"), pol.open_incidents()
    (None, 'inconclusive', {'k': 'critical'})
    >>> pol.observe("k", 0.01, 100, 3), pol.observe("k", 0.01, 100, 4)
    (None, Verdict(action='resolve', severity='critical', value=0.01, threshold=0.1))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from monitor.exceptions import MonitorConfigError

Status = Literal["ok", "inconclusive", "warning", "critical"]
Level = Literal["ok", "warning", "critical"]


@dataclass(frozen=True)
class Thresholds:
    """Warning and critical levels. With ``higher_is_worse=False`` (e.g. AUC) a value at/below is bad.

    >>> Thresholds().level(0.12), Thresholds().level(0.25), Thresholds().level(0.05)
    ('warning', 'critical', 'ok')
    >>> Thresholds(warning=0.8, critical=0.7, higher_is_worse=False).level(0.75)
    'warning'
    """

    warning: float = 0.1
    critical: float = 0.25
    higher_is_worse: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.warning) and math.isfinite(self.critical)):
            raise MonitorConfigError(f"thresholds must be finite, got {self.warning}, {self.critical}")
        ordered = self.warning <= self.critical if self.higher_is_worse else self.warning >= self.critical
        if not ordered:
            side = "<=" if self.higher_is_worse else ">="
            raise MonitorConfigError(f"need warning {side} critical (higher_is_worse={self.higher_is_worse}), "
                                     f"got warning={self.warning}, critical={self.critical}")

    def level(self, value: float) -> Level:
        """Level of a finite ``value``."""
        if self.higher_is_worse:
            return "critical" if value >= self.critical else "warning" if value >= self.warning else "ok"
        return "critical" if value <= self.critical else "warning" if value <= self.warning else "ok"


@dataclass(frozen=True)
class PolicyConfig:
    """How eagerly a key triggers and resolves."""

    thresholds: Thresholds = Thresholds()
    min_samples: int = 200          # below this: inconclusive
    trigger_after: int = 3          # consecutive evaluations at/above a level to trigger (or escalate)
    resolve_after: int = 3          # consecutive evaluations below warning to resolve
    cooldown_ms: int = 60_000       # after a resolve, no new trigger for the same key before this

    def __post_init__(self) -> None:
        if self.min_samples < 0 or self.trigger_after < 1 or self.resolve_after < 1 or self.cooldown_ms < 0:
            raise MonitorConfigError(
                f"policy needs min_samples >= 0, trigger_after >= 1, resolve_after >= 1, cooldown_ms >= 0; got "
                f"{self.min_samples}, {self.trigger_after}, {self.resolve_after}, {self.cooldown_ms}")


@dataclass(frozen=True)
class Verdict:
    """What the caller should send: a trigger (new or escalated incident) or a resolve."""

    action: Literal["trigger", "resolve"]
    severity: Literal["info", "warning", "critical"]
    value: float
    threshold: float


@dataclass
class _KeyState:
    config: PolicyConfig
    open: Literal["warning", "critical"] | None = None
    warn_streak: int = 0      # consecutive conclusive evaluations at warning or worse
    crit_streak: int = 0      # consecutive conclusive evaluations at critical
    ok_streak: int = 0        # consecutive conclusive evaluations below warning
    status: Status = "inconclusive"
    cooldown_until: int | None = None


class AlertPolicy:
    """One state machine per dedup key (str). NaN value or n < min_samples -> 'inconclusive': reported via
    `status(key)` but never triggers nor resolves anything (NaN is not 0). Re-triggers only on escalation
    (warning -> critical), never re-sends the same severity while open (dedup).

    ``per_key`` maps key prefixes (a model, slice or feature part of the dedup key) to their own config; the
    longest matching prefix wins, otherwise ``config`` applies.
    """

    def __init__(self, config: PolicyConfig = PolicyConfig(),
                 per_key: Mapping[str, PolicyConfig] | None = None) -> None:
        self.config = config
        self._per_key = dict(per_key or {})
        self._states: dict[str, _KeyState] = {}

    def config_for(self, key: str) -> PolicyConfig:
        """The config that applies to ``key`` (longest matching ``per_key`` prefix, else the default)."""
        best: str | None = None
        for prefix in self._per_key:
            if key.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return self.config if best is None else self._per_key[best]

    def _state(self, key: str) -> _KeyState:
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _KeyState(self.config_for(key))
        return st

    def observe(self, key: str, value: float, n: int, now_ms: int) -> Verdict | None:
        """Feed one evaluation of ``key``'s statistic; returns a verdict to act on, or None."""
        st = self._state(key)
        cfg = st.config
        th = cfg.thresholds
        value = float(value)
        if math.isnan(value) or n < cfg.min_samples:
            st.status = "inconclusive"
            return None
        level = th.level(value)
        st.status = level
        if level == "ok":
            st.ok_streak += 1
            st.warn_streak = st.crit_streak = 0
        else:
            st.ok_streak = 0
            st.warn_streak += 1
            st.crit_streak = st.crit_streak + 1 if level == "critical" else 0

        if st.open is not None:
            if st.ok_streak >= cfg.resolve_after:
                severity = st.open
                st.open = None
                st.ok_streak = 0
                st.cooldown_until = now_ms + cfg.cooldown_ms
                return Verdict("resolve", severity, value, th.warning)
            if st.open == "warning" and st.crit_streak >= cfg.trigger_after:
                st.open = "critical"
                return Verdict("trigger", "critical", value, th.critical)
            return None

        if st.cooldown_until is not None and now_ms < st.cooldown_until:
            return None
        if st.crit_streak >= cfg.trigger_after:
            st.open = "critical"
            return Verdict("trigger", "critical", value, th.critical)
        if st.warn_streak >= cfg.trigger_after:
            st.open = "warning"
            return Verdict("trigger", "warning", value, th.warning)
        return None

    def status(self, key: str) -> Status:
        """Level of the latest evaluation of ``key`` ('inconclusive' if none was conclusive or ever seen)."""
        st = self._states.get(key)
        return "inconclusive" if st is None else st.status

    def open_incidents(self) -> dict[str, str]:
        """Open incidents: key -> severity."""
        return {k: st.open for k, st in self._states.items() if st.open is not None}

    def retire(self, match: Callable[[str], bool]) -> dict[str, tuple[str | None, Status]]:
        """Close and forget every key ``match`` accepts, because what it watched stopped existing (a model
        version was rolled back or archived); returns ``key -> (open severity or None, last status)`` so the
        caller can send each open incident's resolve with the reason. This is the only way an incident closes
        without a conclusive evaluation: missing data (inconclusive) still never resolves anything.

        >>> pol = AlertPolicy(PolicyConfig(min_samples=1, trigger_after=1, cooldown_ms=0))
        >>> pol.observe("psi|m/2/data_drift/hr/all", 0.4, 10, 0).action
        'trigger'
        >>> _ = pol.observe("psi|m/3/data_drift/hr/all", 0.4, 10, 0)
        >>> pol.retire(lambda k: "|m/2/" in k), sorted(pol.open_incidents())
        ({'psi|m/2/data_drift/hr/all': ('critical', 'critical')}, ['psi|m/3/data_drift/hr/all'])
        """
        out: dict[str, tuple[str | None, Status]] = {}
        for key in [k for k in self._states if match(k)]:
            st = self._states.pop(key)
            out[key] = (st.open, st.status)
        return out

    def forget(self, key: str) -> None:
        """Drop all state of ``key`` (e.g. the model version it watched was retired); sends nothing."""
        self._states.pop(key, None)
