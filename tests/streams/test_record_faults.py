"""Record-level faults in the fused handler and the monitor: each bad record becomes one dead letter with its
reason, the batch goes on; one that makes the handler raise is isolated by the loop as ``poison``."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from features.store import MemoryFeatureStore
from models.registry import Registry
from streams import codec
from streams.metrics import Metrics
from streams.runtime.loop import BatchLoop
from streams.runtime.pipeline import FusedHandler

from .fake_message import FakeMessage
from .pipeline_fakes import T0, TOPIC, dead, make_handler, msg, pos, predictions, run
from .test_loop import FakeConsumer, FakeProducer
from .test_monitor_quality import make as make_monitor


def reasons(result: object) -> list[str]:
    return [dict(o.headers or [])["error"].decode() for o in dead(result)]  # type: ignore[arg-type]


def test_a_null_key_is_not_the_entity_id(registry: Registry, store: MemoryFeatureStore) -> None:
    h = make_handler(registry, store)
    keyless = msg(2)
    keyless.key_ = None
    result = run(h, [keyless])
    assert reasons(result) == ["key_mismatch"] and predictions(result) == []
    assert b"no Kafka key" in dict(dead(result)[0].headers or [])["error_detail"]


def test_future_events_are_dead_lettered_and_never_move_the_watermark(registry: Registry,
                                                                       store: MemoryFeatureStore) -> None:
    now = T0 / 1000 + 3600
    h = make_handler(registry, store, clock=lambda: now, max_future_skew_ms=30_000)
    ahead = int(now * 1000) + 5 * 60_000  # five minutes ahead of the worker's clock
    result = run(h, [msg(0, ts=int(now * 1000) - 1000), msg(1, ts=ahead), msg(2, ts=int(now * 1000))])
    assert reasons(result) == ["future"] and len(predictions(result)) == 2
    assert h.watermarks[0] == int(now * 1000)  # the bad clock did not move it
    later = run(h, [msg(3, ts=int(now * 1000) - 5_000)])  # on time (within lateness of the real watermark)
    assert reasons(later) == [] and len(predictions(later)) == 1
    edge = run(h, [msg(4, ts=int(now * 1000) + 30_000)])  # exactly at the bound: accepted
    assert reasons(edge) == []


def test_the_future_check_can_be_switched_off(registry: Registry, store: MemoryFeatureStore) -> None:
    h = make_handler(registry, store, clock=lambda: T0 / 1000, max_future_skew_ms=0)
    assert reasons(run(h, [msg(0, ts=T0 + 10**9)])) == []


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xef\xbb\xbf" + orjson.dumps({"id": "p1", "ts": T0, "hr": 80.0}), "bad_encoding"),
    ('{"id": "p1", "ts": 1700000000000, "hr": 80.0}'.encode("utf-16"), "bad_encoding"),
    ('{"id": "p1", "ts": 1700000000000, "hr": 80.0}'.encode("utf-32-le"), "bad_encoding"),
    (rb'{"id": "p\ud800", "ts": 1700000000000, "hr": 80.0}', "bad_encoding"),
    (b'{"id": "p1", "ts": 1700000000000, "hr": 8' + b"0" * 400 + b"}", "out_of_range"),
    (b'{"id": "p1", "ts": "2023-11-14t22:13:20z", "hr": 80.0}', None),  # lowercase RFC 3339: accepted
])
def test_encodings_and_numbers_outside_float_range(registry: Registry, store: MemoryFeatureStore, raw: bytes,
                                                    reason: str | None) -> None:
    h = make_handler(registry, store, max_future_skew_ms=0)
    result = run(h, [msg(0, raw=raw, key=b"p1"), msg(1)])
    assert reasons(result) == ([reason] if reason else []) and len(predictions(result)) == (1 if reason else 2)


def test_a_record_that_makes_the_fold_raise_is_isolated_as_poison(registry: Registry,
                                                                    store: MemoryFeatureStore,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_handler(registry, store)
    process = h.engine.process

    def fragile(states, events, **kw):  # noqa: ANN001, ANN003, ANN202 - an unforeseen bug hit by one value
        if any(e.values.get("hr") == 123.0 for e in events):
            raise ZeroDivisionError("float division by zero")
        return process(states, events, **kw)

    monkeypatch.setattr(h.engine, "process", fragile)
    batch = [msg(i, entity=f"p{i % 3}", ts=T0 + i * 1000, hr=123.0 if i == 11 else 80.0) for i in range(40)]
    events: list[str] = []
    consumer, producer = FakeConsumer([batch], events), FakeProducer(events)
    loop = BatchLoop(consumer, producer, h, [TOPIC], max_rows=100, max_ms=1, max_backoff_s=0.0,  # type: ignore[arg-type]
                     flush_timeout_s=0.01, metrics=h.metrics)
    assert loop.run_once() == 40
    preds = [orjson.loads(o.value) for o in producer.delivered if o.topic == "predictions"]
    assert sorted(p["prediction_id"].split("-")[2] for p in preds) == sorted(str(i) for i in range(40) if i != 11)
    assert len({p["prediction_id"] for p in preds}) == 39  # none scored twice
    [poison] = [o for o in producer.delivered if o.topic == f"{TOPIC}.dlq"]
    headers = dict(poison.headers or [])
    assert (headers["error"], headers["error_class"], headers["source_offset"]) == (b"poison", b"ZeroDivisionError",
                                                                                     b"11")
    assert consumer.commits[-1] == [(TOPIC, 0, 40)] and loop.health.consecutive_failures == 0
    assert store.position(h.view, pos(0))[0] == 39  # the state was saved past the poison record


# --------------------------------------------------------------------------------------------- the monitor
def _monitor_batch(values: Sequence[tuple[str, bytes | None]]) -> list[FakeMessage]:
    return [FakeMessage(topic, 0, i, value) for i, (topic, value) in enumerate(values)]


GOOD = {"prediction_id": "v-0-1-champion", "entity_id": "e", "event_ts": 5, "model": "risk", "model_version": 1,
        "variant": "champion", "score": 0.5, "label": 1, "scored_at": 6}


@pytest.mark.parametrize(("topic", "value", "reason"), [
    ("predictions", b"{not json", "malformed_json"),
    ("predictions", None, "malformed_json"),
    ("predictions", b"[1]", "not_an_object"),
    ("predictions", b"\xef\xbb\xbf" + codec.encode(GOOD), "bad_encoding"),
    ("predictions", codec.encode({**GOOD, "prediction_id": None}), "missing_field"),
    ("predictions", codec.encode({**GOOD, "score": "high"}), "wrong_type"),
    ("predictions", b'{"prediction_id": "p", "entity_id": "e", "event_ts": 5, "model": "m", "model_version": 1, '
                    b'"variant": "champion", "score": 1' + b"0" * 400 + b', "scored_at": 6}', "wrong_type"),
    ("predictions", codec.encode({**GOOD, "model_version": 1.5}), "wrong_type"),
    ("predictions", rb'{"prediction_id": "\udc00", "entity_id": "e"}', "bad_encoding"),
    ("labels", codec.encode({"label": 1}), "missing_field"),
    ("labels", codec.encode({"prediction_id": "p", "label": 7}), "wrong_type"),
    ("labels", codec.encode({"entity_id": "e", "event_ts": "soon", "label": 0}), "wrong_type"),
    ("labels", b"\xff\xfe{", "bad_encoding"),
])
def test_the_monitor_dead_letters_a_bad_record_to_its_topics_dlq(topic: str, value: bytes | None,
                                                                  reason: str) -> None:
    h, join = make_monitor(quarantine=False)
    h.metrics = Metrics()
    result = h.process(_monitor_batch([("predictions", codec.encode(GOOD)), (topic, value),  # type: ignore[arg-type]
                                       ("labels", codec.encode({"prediction_id": "x", "label": 0}))]))
    [dlq] = [o for o in result.outputs if o.topic.endswith(".dlq")]
    headers = dict(dlq.headers or [])
    assert dlq.topic == f"{topic}.dlq" and headers["error"] == reason.encode() and dlq.value == (value or b"")
    assert headers["source_offset"] == b"1" and h.malformed == 1
    assert h.metrics.dead_letters.labels(topic, reason)._value.get() == 1


def test_the_monitor_reads_a_good_prediction_as_before() -> None:
    from models.prediction import Prediction
    from streams.runtime.monitor_records import parse_prediction

    p = Prediction("p", "e", 5, "m", 2, "challenger", 0.25, None, 6, {"hr": 1.0}, {"hr": "stuck"})
    assert parse_prediction(codec.encode(p.to_dict())) == p == Prediction.from_dict(orjson.loads(codec.encode(p.to_dict())))


def test_a_fused_handler_without_a_clock_uses_the_wall_clock(registry: Registry, store: MemoryFeatureStore) -> None:
    h: FusedHandler = make_handler(registry, store)
    assert reasons(run(h, [msg(0, ts=T0)])) == []  # 2023: in the past
