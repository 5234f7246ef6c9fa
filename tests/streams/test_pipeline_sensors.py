"""The fused pipeline's sensor-check hook: readings and rejections in, marked predictions out."""

from __future__ import annotations

from features.store import MemoryFeatureStore
from models.registry import Registry
from monitor.sensor_checks import FieldRule, SensorChecks, SensorConfig

from .pipeline_fakes import T0, dead, make_handler, msg, predictions, run


def test_a_stuck_and_a_dropping_sensor_mark_their_entities_predictions(registry: Registry,
                                                                       store: MemoryFeatureStore) -> None:
    sensors = SensorChecks(SensorConfig({"hr": FieldRule(stuck_after=4, dropouts=2)}))
    h = make_handler(registry, store, sensors=sensors)
    batch = [msg(i, "stuck", T0 + i * 1000, 77.0) for i in range(5)]
    batch += [msg(5 + i, "ok", T0 + i * 1000, 70.0 + i) for i in range(5)]
    batch += [msg(10, "drop", T0, 70.0), msg(11, "drop", T0 + 1000, 999.0), msg(12, "drop", T0 + 2000, -5.0),
              msg(13, "drop", T0 + 3000, 71.0)]
    result = run(h, batch)
    marked = {p.entity_id: p.quality for p in predictions(result)}
    assert marked == {"stuck": {"hr": "stuck"}, "ok": None, "drop": {"hr": "dropout"}}
    assert len(dead(result)) == 2  # the rejected readings are still dead-lettered as before


def test_without_sensor_checks_nothing_is_marked(registry: Registry, store: MemoryFeatureStore) -> None:
    h = make_handler(registry, store)
    result = run(h, [msg(i, "stuck", T0 + i * 1000, 77.0) for i in range(20)])
    assert all(p.quality is None for p in predictions(result))
