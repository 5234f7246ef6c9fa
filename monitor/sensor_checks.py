"""Per-entity sensor checks on raw readings: a value stuck, readings dropping out, spikes faster than physics.

A broken sensor is not a drifting world: a stuck SpO2 probe or a heart-rate lead that spikes moves the feature
distributions of the entities it sits on, and the drift statistics would blame the world (or the model). These
checks look at each entity's own readings, where the pipeline has them (the fused pipeline calls them on each
batch, before scoring), and mark the entity's predictions (``Prediction.quality``), so the monitor can raise a
``data_quality`` alert naming the entities and keep them out of its drift statistics
(:mod:`monitor.data_quality`). Pure: no Kafka, Redis or Prometheus.

Per field (a :class:`FieldRule`), over the last ``window`` readings of the entity:

- **stuck**: the same value ``stuck_after`` readings in a row (values that legitimately repeat, such as a
  saturated SpO2 of 100 %, are listed in ``stuck_ignore``);
- **spike**: a change larger than ``max_step + max_rate_per_s * dt`` between two consecutive readings, and back
  by as much at the next one (out *and* back: a sustained step, such as an arrhythmia's onset, is not a fault);
  readings more than ``max_gap_s`` apart are not compared;
- **dropout**: at least ``dropouts`` of the last ``window`` readings rejected because of this field (out of range,
  missing, not a number: the pipeline dead-letters them, and passes the rejection here).

An entity is faulty while one of these holds (a spike or a dropout stays in its window of ``window`` readings, so
an intermittent fault keeps the entity marked). Readings older than the entity's latest (late or replayed ones)
are ignored. At most ``max_entities`` entities are tracked, least recently seen out.

Example:
    >>> checks = SensorChecks(SensorConfig({"spo2": FieldRule(stuck_after=4, stuck_ignore=(100.0,)),
    ...                                      "hr": FieldRule(max_step=30.0)}))
    >>> for i, (spo2, hr) in enumerate([(97.1, 80), (97.1, 81), (97.1, 150), (97.1, 82)]):
    ...     checks.observe("p1", 60_000 * i, {"spo2": spo2, "hr": hr})
    >>> checks.faults("p1")
    {'spo2': 'stuck', 'hr': 'spike'}
    >>> for i in range(6):
    ...     checks.observe("p2", 60_000 * i, {"spo2": 100.0, "hr": 70 + i})
    >>> checks.faults("p2") is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.prediction import Prediction
from monitor.exceptions import MonitorConfigError

_FIELD = re.compile(r"^field '([^']+)'")


@dataclass(frozen=True)
class FieldRule:
    """What a broken sensor looks like on one field (0 switches a check off)."""

    stuck_after: int = 0
    stuck_ignore: tuple[float, ...] = ()
    max_step: float = 0.0
    max_rate_per_s: float = 0.0
    max_gap_s: float = 900.0
    dropouts: int = 2

    def __post_init__(self) -> None:
        if self.stuck_after < 0 or self.max_step < 0 or self.max_rate_per_s < 0 or self.dropouts < 0:
            raise MonitorConfigError(f"sensor rule values must be >= 0, got {self}")


@dataclass(frozen=True)
class SensorConfig:
    """The rules per field, the number of readings remembered per entity, and how many entities are tracked."""

    rules: Mapping[str, FieldRule]
    window: int = 30
    max_entities: int = 100_000

    def __post_init__(self) -> None:
        if not 1 <= self.window <= 64 or self.max_entities < 1:
            raise MonitorConfigError(f"sensor checks need 1 <= window <= 64 and max_entities >= 1, got "
                                     f"{self.window}, {self.max_entities}")


# Healthy readings of the simulator's patients (streams.local.simulator, 600 s at 0.1-50 s between readings):
# the largest step between consecutive readings is hr 18, rr 9, spo2 3.7, temp 0.73, sbp 32, dbp 21, and the
# longest run of one value 11 (rr, whole breaths per minute) apart from a saturated SpO2 of 100 (179 readings).
VITALS_RULES: dict[str, FieldRule] = {
    "hr": FieldRule(stuck_after=15, max_step=30.0),
    "rr": FieldRule(stuck_after=20, max_step=15.0),
    "spo2": FieldRule(stuck_after=10, stuck_ignore=(100.0,), max_step=8.0),
    "temp": FieldRule(stuck_after=15, max_step=1.5),
    "sbp": FieldRule(stuck_after=15, max_step=50.0),
    "dbp": FieldRule(stuck_after=15, max_step=35.0),
}
# Vehicles: a fix may move at most ~90 m/s (the view's speed limit) plus ~30 m of GPS noise; 1 degree of latitude
# is ~111 km (longitude is shorter away from the equator, so its limit is looser there).
GPS_RULES: dict[str, FieldRule] = {
    "lat": FieldRule(max_step=0.0003, max_rate_per_s=0.0009),
    "lon": FieldRule(max_step=0.0005, max_rate_per_s=0.0015),
    "speed": FieldRule(stuck_after=0, max_step=25.0, max_rate_per_s=8.0),
}
RULES: dict[str, dict[str, FieldRule]] = {"vitals": VITALS_RULES, "gps": GPS_RULES}
"""Default rules of the shipped views, by view name."""


class _Field:
    __slots__ = ("last", "last_ts", "run", "pending", "stuck", "spike", "drop")

    def __init__(self) -> None:
        self.last: float | None = None
        self.last_ts = 0
        self.run = 0
        self.pending = 0  # sign of an implausible step waiting for its way back
        self.stuck = self.spike = self.drop = 0  # bit masks over the entity's last `window` readings


class _Entity:
    __slots__ = ("fields", "last_ts", "faults")

    def __init__(self, names: Iterable[str]) -> None:
        self.fields = {name: _Field() for name in names}
        self.last_ts = -1
        self.faults: dict[str, str] | None = None


class SensorChecks:
    """The checks of one worker (all the partitions it owns); see the module docstring."""

    def __init__(self, config: SensorConfig) -> None:
        self.config = config
        self._rules = dict(config.rules)
        self._compiled = [(name, r.stuck_after, frozenset(r.stuck_ignore), r.max_step, r.max_rate_per_s / 1000,
                           r.max_gap_s * 1000) for name, r in self._rules.items()]
        self._mask = (1 << config.window) - 1
        self._entities: dict[str, _Entity] = {}
        self.evicted = 0

    def _entity(self, entity: str) -> _Entity:
        ent = self._entities.pop(entity, None)  # re-inserted: the dict's order is least recently seen first
        if ent is None:
            ent = _Entity(self._rules)
            if len(self._entities) >= self.config.max_entities:
                del self._entities[next(iter(self._entities))]
                self.evicted += 1
        self._entities[entity] = ent
        return ent

    def observe(self, entity: str, ts_ms: int, values: Mapping[str, Any]) -> None:
        """One accepted reading of ``entity``."""
        ent = self._entity(entity)
        if ts_ms <= ent.last_ts:
            return  # late or replayed: its neighbours are not its neighbours
        ent.last_ts = ts_ms
        mask = self._mask
        fields = ent.fields
        flagged = False  # any mark left in a field's window after this reading
        for name, stuck_after, ignore, max_step, rate, gap_ms in self._compiled:
            f = fields[name]
            if f.stuck or f.spike or f.drop:  # age the window (most entities have nothing in it)
                f.stuck, f.spike, f.drop = (f.stuck << 1) & mask, (f.spike << 1) & mask, (f.drop << 1) & mask
                flagged = flagged or bool(f.stuck or f.spike or f.drop)
            x = values.get(name)
            if x is None or x.__class__ not in (int, float):
                continue
            last = f.last
            if last is None:
                f.last, f.last_ts, f.run = float(x), ts_ms, 1
                continue
            if x == last:
                f.run += 1
                if stuck_after and f.run >= stuck_after and x not in ignore:
                    f.stuck |= 1
                    flagged = True
            else:
                f.run = 1
            dt = ts_ms - f.last_ts
            if max_step and 0 < dt <= gap_ms:
                step = x - last
                if abs(step) > max_step + rate * dt:
                    if f.pending and (step > 0) != (f.pending > 0):
                        f.spike |= 1
                        f.pending = 0
                        flagged = True
                    else:
                        f.pending = 1 if step > 0 else -1
                else:
                    f.pending = 0
            else:
                f.pending = 0
            f.last, f.last_ts = float(x), ts_ms
        ent.faults = self._faults(ent) if (flagged or ent.faults is not None) else None

    def observe_rejected(self, entity: str, field: str | None) -> None:
        """One reading of ``entity`` rejected because of ``field`` (None: some other reason; it only ages the
        entity's window)."""
        ent = self._entity(entity)
        mask = self._mask
        for name, f in ent.fields.items():
            f.stuck, f.spike, f.drop = (f.stuck << 1) & mask, (f.spike << 1) & mask, (f.drop << 1) & mask
            if name == field:
                f.drop |= 1
        ent.faults = self._faults(ent)

    def _faults(self, ent: _Entity) -> dict[str, str] | None:
        out: dict[str, str] = {}
        for name, f in ent.fields.items():
            if f.stuck:
                out[name] = "stuck"
            elif f.drop and f.drop.bit_count() >= max(1, self._rules[name].dropouts):
                out[name] = "dropout"
            elif f.spike:
                out[name] = "spike"
        return out or None

    def faults(self, entity: str) -> dict[str, str] | None:
        """The faults of ``entity`` now (``{field: stuck|dropout|spike}``), None when it looks healthy."""
        ent = self._entities.get(entity)
        return None if ent is None else ent.faults

    def __len__(self) -> int:
        return len(self._entities)

    # -- the pipeline's two calls ------------------------------------------------------------------------------
    def observe_batch(self, events: Iterable[Any], rejected: Iterable[tuple[bytes | None, Any]] = ()) -> None:
        """A batch: accepted events (``entity_id``, ``ts_ms``, ``values``) and rejected records as (Kafka key,
        ``RecordError``); the rejected field is read from the error's detail (``field 'spo2'=0.0 outside ...``)."""
        for ev in events:
            self.observe(ev.entity_id, ev.ts_ms, ev.values)
        for key, err in rejected:
            if key:
                m = _FIELD.match(getattr(err, "detail", "") or "")
                self.observe_rejected(key.decode("utf-8", "replace"), m.group(1) if m else None)

    def mark(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        """The predictions, those of faulty entities with ``quality`` set to their faults."""
        entities = self._entities
        out = []
        for p in predictions:
            ent = entities.get(p.entity_id)
            if ent is None or ent.faults is None:
                out.append(p)
            else:  # the constructor, not dataclasses.replace: several times cheaper per call
                out.append(Prediction(p.prediction_id, p.entity_id, p.event_ts, p.model, p.model_version, p.variant,
                                      p.score, p.label, p.scored_at, p.features, dict(ent.faults)))
        return out
