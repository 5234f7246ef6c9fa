"""Silent entities: the pipeline reports them once, with their windows evaluated at the partition watermark."""

from __future__ import annotations

import orjson

from features.silence import SilenceTracker
from models.registry import Registry

from . import pipeline_fakes as fakes


def stale_records(result) -> list[dict]:  # noqa: ANN001
    return [orjson.loads(o.value) for o in result.outputs if o.topic == "features.vitals"]


def test_silent_entity_reported_once_when_the_partition_watermark_passes_it(registry: Registry, store) -> None:  # noqa: ANN001
    handler = fakes.make_handler(registry, store, silence=SilenceTracker(idle_ms=120_000))
    t0 = fakes.T0
    first = fakes.run(handler, [fakes.msg(0, "quiet", t0, 90.0), fakes.msg(1, "busy", t0, 70.0)])
    assert stale_records(first) == []
    # "busy" keeps sending for 3 minutes of event time; "quiet" never sends again
    later = [fakes.msg(2 + i, "busy", t0 + (i + 1) * 30_000, 70.0) for i in range(6)]
    result = fakes.run(handler, later)
    [record] = stale_records(result)
    assert record["entity_id"] == "quiet" and record["stale"] is True
    assert record["last_event_ts"] == t0 and record["as_of"] == t0 + 180_000
    assert record["silent_for_ms"] == 180_000
    assert record["features"]["hr_count_1m"] == 0.0  # its 1-minute window has closed: nothing left in it
    assert record["features"]["hr_mean_1m"] is None  # NaN (an empty window) travels as JSON null
    again = fakes.run(handler, [fakes.msg(9, "busy", t0 + 200_000, 70.0)])
    assert stale_records(again) == []  # once per silence
    assert handler.metrics.silent_entities.labels("vitals")._value.get() == 1


def test_a_partition_with_no_records_at_all_reports_its_entities_on_the_idle_timeout(registry: Registry, store) -> None:  # noqa: ANN001
    handler = fakes.make_handler(registry, store, silence=SilenceTracker(idle_ms=120_000))
    fakes.run(handler, [fakes.msg(0, "a", fakes.T0, 80.0), fakes.msg(1, "b", fakes.T0 + 1000, 81.0)])
    import time
    assert handler.idle_outputs(time.time(), idle_wall_s=3600) == []
    outputs = handler.idle_outputs(time.time() + 7200, idle_wall_s=3600)
    assert sorted(orjson.loads(o.value)["entity_id"] for o in outputs) == ["a", "b"]
    assert handler.idle_outputs(time.time() + 7300, idle_wall_s=3600) == []
