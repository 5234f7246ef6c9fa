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

import os
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from features.kernel import compiled_parts_on, exact_double
from models.prediction import Prediction
from monitor.exceptions import MonitorConfigError

_FIELD = re.compile(r"^field '([^']+)'")

try:
    from monitor._sensors import Kernel as _Kernel
except ImportError:  # built without a C compiler: observe_reading serves
    _Kernel = None


def kernel_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the C kernel is built and not turned off with ``DRIFTLINE_PURE_PYTHON=1``."""
    return _Kernel is not None and compiled_parts_on(environ)


def sensor_kernel(rules: Sequence[tuple[str, int, frozenset, float, float, float]], mask: int) -> Any | None:
    """The C kernel for ``rules``, or None (not built, a mask past 64 bits, or an allowed repeating value no double
    stands for exactly: only Python compares those as it does)."""
    ignored = [[exact_double(v) for v in ignore] for _, _, ignore, *_ in rules]
    if _Kernel is None or mask >= 1 << 64 or any(v is None for values in ignored for v in values):
        return None
    return _Kernel([(name, after, tuple(values), step, rate, gap)
                    for (name, after, _, step, rate, gap), values in zip(rules, ignored, strict=True)], mask)


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


def observe_reading(rules: Sequence[tuple[str, int, frozenset, float, float, float]], mask: int, last: array,
                    state: array, marks: array, ts_ms: int, values: Mapping[str, Any]) -> bool:
    """One accepted reading into one entity's arrays (the Python twin of ``monitor._sensors``, its reference).

    Per field ``i`` (in rule order): ``last[i]`` its last value; ``state[3i:3i+3]`` the run of equal values (0:
    no reading yet), the sign of an implausible step waiting for its way back, and the last reading's time;
    ``marks[3i:3i+3]`` the stuck, spike and dropout bit windows. True when a mark is set or still in a window.
    """
    flagged = False  # any mark left in a field's window after this reading
    for i, (name, stuck_after, ignore, max_step, rate, gap_ms) in enumerate(rules):
        m = 3 * i
        if marks[m] or marks[m + 1] or marks[m + 2]:  # age the window (most entities have nothing in it)
            marks[m], marks[m + 1], marks[m + 2] = ((marks[m] << 1) & mask, (marks[m + 1] << 1) & mask,
                                                    (marks[m + 2] << 1) & mask)
            flagged = flagged or bool(marks[m] or marks[m + 1] or marks[m + 2])
        x = values.get(name)
        if x is None or x.__class__ not in (int, float):
            continue
        run = state[m]
        if not run:
            last[i], state[m], state[m + 2] = float(x), 1, ts_ms
            continue
        prev = last[i]
        if x == prev:
            state[m] = run + 1
            if stuck_after and run + 1 >= stuck_after and x not in ignore:
                marks[m] |= 1
                flagged = True
        else:
            state[m] = 1
        dt = ts_ms - state[m + 2]
        if max_step and 0 < dt <= gap_ms:
            step = x - prev
            if abs(step) > max_step + rate * dt:
                pending = state[m + 1]
                if pending and (step > 0) != (pending > 0):
                    marks[m + 1] |= 1
                    state[m + 1] = 0
                    flagged = True
                else:
                    state[m + 1] = 1 if step > 0 else -1
            else:
                state[m + 1] = 0
        else:
            state[m + 1] = 0
        last[i], state[m + 2] = float(x), ts_ms
    return flagged


class _Entity:
    __slots__ = ("last", "state", "marks", "last_ts", "faults")

    def __init__(self, fields: int) -> None:
        self.last = array("d", bytes(8 * fields))  # per field: the last value
        self.state = array("q", bytes(24 * fields))  # per field: run, pending step sign, last time
        self.marks = array("Q", bytes(24 * fields))  # per field: stuck, spike, drop windows (bit masks)
        self.last_ts = -1
        self.faults: dict[str, str] | None = None


class SensorChecks:
    """The checks of one worker (all the partitions it owns); see the module docstring. ``compiled``: run each
    reading through the C kernel ``monitor._sensors`` when it is built (None: unless ``DRIFTLINE_PURE_PYTHON=1``);
    :func:`observe_reading` is its Python twin."""

    def __init__(self, config: SensorConfig, *, compiled: bool | None = None) -> None:
        self.config = config
        self._rules = dict(config.rules)
        self._names = tuple(self._rules)
        self._compiled = [(name, r.stuck_after, frozenset(r.stuck_ignore), r.max_step, r.max_rate_per_s / 1000,
                           r.max_gap_s * 1000) for name, r in self._rules.items()]
        self._mask = (1 << config.window) - 1
        wanted = kernel_wanted() if compiled is None else compiled
        self._kernel = sensor_kernel(self._compiled, self._mask) if wanted else None
        self._entities: dict[str, _Entity] = {}
        self.evicted = 0

    @property
    def compiled(self) -> bool:
        """Whether readings go through the C kernel."""
        return self._kernel is not None

    def _entity(self, entity: str) -> _Entity:
        ent = self._entities.pop(entity, None)  # re-inserted: the dict's order is least recently seen first
        if ent is None:
            ent = _Entity(len(self._names))
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
        flagged = None
        if self._kernel is not None:
            flagged = self._kernel.observe(ent.last, ent.state, ent.marks, ts_ms, values)
        if flagged is None:  # no kernel, or a value only Python reads exactly
            flagged = observe_reading(self._compiled, self._mask, ent.last, ent.state, ent.marks, ts_ms, values)
        ent.faults = self._faults(ent) if (flagged or ent.faults is not None) else None

    def observe_rejected(self, entity: str, field: str | None) -> None:
        """One reading of ``entity`` rejected because of ``field`` (None: some other reason; it only ages the
        entity's window)."""
        ent = self._entity(entity)
        mask, marks = self._mask, ent.marks
        for i, name in enumerate(self._names):
            m = 3 * i
            marks[m], marks[m + 1], marks[m + 2] = (marks[m] << 1) & mask, (marks[m + 1] << 1) & mask, (
                (marks[m + 2] << 1) & mask)
            if name == field:
                marks[m + 2] |= 1
        ent.faults = self._faults(ent)

    def _faults(self, ent: _Entity) -> dict[str, str] | None:
        out: dict[str, str] = {}
        marks = ent.marks
        for i, name in enumerate(self._names):
            stuck, spike, drop = marks[3 * i], marks[3 * i + 1], marks[3 * i + 2]
            if stuck:
                out[name] = "stuck"
            elif drop and drop.bit_count() >= max(1, self._rules[name].dropouts):
                out[name] = "dropout"
            elif spike:
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

    def quality_of(self, entity_ids: Sequence[str]) -> list[dict[str, str] | None] | None:
        """Per entity its faults now (a copy), None for a healthy one; None for all when none has any (the
        pipeline's ``quality`` column of a prediction group)."""
        entities = self._entities
        out: list[dict[str, str] | None] = [None] * len(entity_ids)
        found = False
        for i, entity in enumerate(entity_ids):
            ent = entities.get(entity)
            if ent is not None and ent.faults is not None:
                out[i] = dict(ent.faults)
                found = True
        return out if found else None

    def mark(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        """The predictions, those of faulty entities with ``quality`` set to their faults."""
        quality = self.quality_of([p.entity_id for p in predictions])
        if quality is None:
            return list(predictions)
        # the constructor, not dataclasses.replace: several times cheaper per call
        return [p if q is None else Prediction(p.prediction_id, p.entity_id, p.event_ts, p.model, p.model_version,
                                               p.variant, p.score, p.label, p.scored_at, p.features, q)
                for p, q in zip(predictions, quality, strict=True)]
