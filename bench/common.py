"""Shared pieces of the benchmarks: result tables, statistics, the embedded stack, per-run names, training.

Every bench returns :class:`Table` objects; ``python -m bench`` prints them and writes ``bench/RESULTS.md``.
Figures are compared with a baseline measured in the same run (a ratio column), never asserted as times.

Example:
    >>> t = Table("demo", "A table", ["batch", "rows/s"], [[1, 1234.5]], limit="limit: nothing")
    >>> print(t.render())
    ### A table
    <BLANKLINE>
    | batch | rows/s |
    | ---: | ---: |
    | 1 | 1,234 |
    <BLANKLINE>
    limit: nothing
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from features.definitions import FeatureView
from features.materialize import backfill
from features.offline import TrainingRow
from features.views import VITALS_VIEW
from models.registry import Registry
from models.training_job import build_training_set, train_and_register
from streams import codec
from streams.local.demo import to_events
from streams.local.simulator import SimConfig, SimEvent, generate
from streams.local.stack import EmbeddedStack, StackInfo
from streams.settings import KafkaSettings, PipelineSettings, Settings, TopicSettings

MODEL = "vitals-risk"
#: the demo's v1 inputs (no SpO2 features); v2 uses every feature of VITALS_VIEW
V1_FEATURES = ("hr_mean_5m", "hr_std_5m", "hr_max_5m", "rr_mean_5m", "temp_last", "sbp_mean_5m", "sbp_slope_30m",
               "dbp_mean_5m")


@dataclass
class Table:
    """One result table: columns, rows, a one-line ``limit`` (what bounds the number) and config notes."""

    bench: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    limit: str = ""
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Markdown: a heading, the notes, the table, then the limit line."""
        lines = [f"### {self.title}", ""]
        if self.notes:
            lines += [*self.notes, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("| " + " | ".join("---:" if _numeric_column(self.rows, i) else "---"
                                       for i in range(len(self.columns))) + " |")
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in self.rows]
        if self.limit:
            lines += ["", self.limit]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json`` output)."""
        return dataclasses.asdict(self)


def _numeric_column(rows: Sequence[Sequence[Any]], i: int) -> bool:
    return bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows)


def fmt(value: Any) -> str:
    """Human formatting: thousands separators, 3 significant digits for small floats.

    >>> fmt(1234567.8), fmt(12.345), fmt(0.01234), fmt(3), fmt(None), fmt("x")
    ('1,234,568', '12.3', '0.0123', '3', '-', 'x')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    """Linear-interpolated percentiles (numpy's default).

    >>> percentiles([1.0, 2.0, 3.0, 4.0, 5.0], (50, 100))
    [3.0, 5.0]
    """
    arr = np.asarray(values, dtype=np.float64)
    return [float(np.percentile(arr, q)) for q in qs]


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is zero.

    >>> ratio(6.0, 3.0), ratio(1.0, 0.0)
    (2.0, nan)
    """
    return a / b if b else float("nan")


def run_id() -> str:
    """A short unique id for this run's topics, groups and key prefixes."""
    return uuid.uuid4().hex[:8]


@contextlib.contextmanager
def bench_stack(external_bootstrap: str | None = None) -> Iterator[StackInfo]:
    """An embedded stack in a temp run dir with its OWN redis-server (so INFO used_memory is not shared with
    anyone); everything is stopped and the run dir removed at the end."""
    run_dir = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    stack = EmbeddedStack(run_dir, prefer_own_redis=True, external_bootstrap=external_bootstrap)
    try:
        with stack as info:
            yield info
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_on_fresh_stack(run: Callable[[StackInfo, Any], list[Table]], cfg: Any) -> list[Table]:
    """``run(info, cfg)`` on a fresh :func:`bench_stack`, then print its tables (the benches' ``main``)."""
    with bench_stack() as info:
        tables = run(info, cfg)
    for t in tables:
        print(t.render(), end="\n\n", flush=True)
    return tables


def bench_settings(info: StackInfo, rid: str, *, registry_dir: str = "", batch_max_ms: int = 50,
                   batch_max_rows: int = 500, batch_linger_ms: int = 0,
                   checkpoint_interval_ms: int | None = None) -> Settings:
    """Settings for one run: per-run topics and groups, tansu-friendly group timing (first message ~1.2 s)."""
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=info.bootstrap_servers, session_timeout_ms=2000,
                            heartbeat_interval_ms=200),
        topics=TopicSettings(predictions=f"bench-predictions-{rid}", labels=f"bench-labels-{rid}",
                             alerts=f"bench-alerts-{rid}", control=f"bench-control-{rid}"),
        pipeline=PipelineSettings(batch_max_rows=batch_max_rows, batch_max_ms=batch_max_ms,
                                  batch_linger_ms=batch_linger_ms,
                                  checkpoint_interval_ms=PipelineSettings.checkpoint_interval_ms
                                  if checkpoint_interval_ms is None else checkpoint_interval_ms,
                                  features_group=f"bench-features-{rid}", monitor_group=f"bench-monitor-{rid}"),
        redis_url=info.redis_url,
        registry_dir=registry_dir or str(Path(info.run_dir) / f"registry-{rid}"),
        run_dir=info.run_dir,
        control_key=secrets.token_hex(32),
    )


def bench_view(rid: str, base: FeatureView = VITALS_VIEW) -> FeatureView:
    """``base`` reading this run's own source topic (its fingerprint, hence its Redis keys, are new too)."""
    return dataclasses.replace(base, source_topic=f"bench-{base.name}-{rid}")


def faulty_sensors(view: FeatureView, readings: Iterable[tuple[str, int, Mapping[str, Any]]]) -> list[str]:
    """The entities the worker's sensor checks (``streams.runtime.workers.sensor_checks``) mark faulty after
    ``readings`` ((entity, event time, values), in the order sent). A bench's stream should have none: on a stream
    of broken sensors every event takes the fault path, and the bench measures that path.

    >>> faulty_sensors(VITALS_VIEW, [("p1", i * 1000, {"hr": 70.0}) for i in range(20)])
    ['p1']
    """
    from streams.runtime.workers import sensor_checks
    from streams.settings import Settings

    checks = sensor_checks(Settings(), view)  # the worker's own builder (build_pipeline)
    if checks is None:  # switched off, or no rules for the view: nothing would be checked, so nothing is shown
        raise ValueError(f"the worker builds no sensor checks for view {view.name!r}")
    entities: dict[str, None] = {}
    for entity, ts, values in readings:
        checks.observe(entity, ts, {k: v for k, v in values.items() if isinstance(v, float)})
        entities[entity] = None
    return [e for e in entities if checks.faults(e)]


def delete_group_keys(client: redis.Redis, group: str) -> int:
    """Delete every ``dl:...:g:<group>:...`` key (state and offsets of one consumer group); returns the count."""
    n = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"dl:*:g:{group}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            n += int(client.delete(*batch))  # type: ignore[arg-type]
            batch.clear()
    if batch:
        n += int(client.delete(*batch))  # type: ignore[arg-type]
    return n


def vitals_stream(entities: int, minutes: float, interval_s: float = 10.0, *, seed: int = 0,
                  rate: float = 400.0) -> list[SimEvent]:
    """Simulated vitals: ``entities`` patients, one reading per ``interval_s`` each, over ``minutes`` of event time.

    >>> evs = vitals_stream(4, 1.0)
    >>> len(evs), evs[4].value["ts"] - evs[0].value["ts"]
    (24, 10000)
    """
    time_scale = interval_s * rate / entities
    duration_s = minutes * 60 / time_scale
    return list(generate(SimConfig(source="vitals", entities=entities, rate=rate, duration_s=duration_s,
                                   time_scale=time_scale, seed=seed)))


def to_records(stream: Sequence[SimEvent]) -> list[tuple[bytes, bytes]]:
    """Kafka (key, value) bytes of simulated events."""
    return [(e.key.encode(), codec.encode(e.value)) for e in stream]


@dataclass(frozen=True)
class Trained:
    """Two registered versions (v2 in production) and the feature rows they were trained on."""

    registry: Registry
    v1: int
    v2: int
    rows: list[TrainingRow]


def train_models(registry_dir: str | Path, *, entities: int = 200, minutes: float = 10.0, seed: int = 7,
                 model: str = MODEL) -> Trained:
    """Like the demo: simulated history → VITALS_VIEW features (backfill) → logistic v1 (no SpO2) and v2 (all
    features), v1 promoted then v2. Windows are not warmed up (a bench needs realistic rows, not a good AUC)."""
    events, labels = to_events(vitals_stream(entities, minutes, seed=seed))
    history = backfill(VITALS_VIEW, events, num_partitions=3)
    registry = Registry(registry_dir)
    v1 = train_and_register(registry, model, build_training_set(VITALS_VIEW, history.rows, labels, V1_FEATURES),
                            seed=seed, registered_by="bench")
    v2 = train_and_register(registry, model, build_training_set(VITALS_VIEW, history.rows, labels), seed=seed,
                            registered_by="bench")
    registry.promote(model, v1.version, by="bench", reason="first")
    registry.promote(model, v2.version, by="bench", reason="second")
    return Trained(registry, v1.version, v2.version, history.rows)


__all__ = ["MODEL", "V1_FEATURES", "Table", "Trained", "bench_settings", "bench_stack", "bench_view",
           "delete_group_keys", "fmt", "run_on_fresh_stack", "percentiles", "ratio", "run_id", "to_records",
           "train_models", "vitals_stream"]
