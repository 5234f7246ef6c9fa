"""Property: whatever bytes arrive, the fused handler (with a real Redis store) turns every record into exactly one
prediction or exactly one dead letter, and ``process`` never raises for a record-level fault.

Inputs (hypothesis): arbitrary bytes; valid records; valid records with one part replaced by something hostile
(numbers with hundreds of digits, NaN/Infinity, lone surrogates and other odd unicode, deep nesting, wrong types,
duplicated fields, BOMs and UTF-16, odd sizes around the 64 KiB bound) and odd keys (none, empty, not UTF-8, not
the entity id, odd unicode). Every example runs in its own consumer group; the test's keys are deleted after it.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from features.records import MAX_RECORD_BYTES
from features.redis_store import RedisFeatureStore
from models.registry import Registry
from models.scorer import Scorer
from streams.runtime.pipeline import FusedHandler
from tests.budget import examples

from .fake_message import FakeMessage
from .pipeline_fakes import T0, VIEW

NOW_S = T0 / 1000 + 600  # the worker's clock: ten minutes after the first valid event
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                           max_leaves=8)


def _dumps(value: object) -> str:
    return json.dumps(value)  # NaN/Infinity as Python writes them; lone surrogates as \ud800 escapes


HOSTILE = st.one_of(
    JSON_VALUES.map(_dumps),
    st.integers(1, 900).map(lambda n: "9" * n),  # up to 900 digits (Python's int parser stops at 4,300)
    st.integers(1, 900).map(lambda n: "-1" + "0" * n + ".5"),
    st.sampled_from(["NaN", "-Infinity", "1e999", "-1e-999", "1E400", "0.0e0", "-0", "true", "null", "[]", "{}",
                     '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\u202e\ufeff"', '"\U0001f600"', '"x\\u0000y"',
                     '"2023-11-14t22:13:20z"', '"2023-11-14T22:13:20+01"', '"2016-12-31T23:59:60Z"']),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    st.text(max_size=12).map(lambda t: json.dumps(t, ensure_ascii=False)),
)
ENTITIES = st.one_of(st.sampled_from(["p1", "p2", "p3"]), st.text(min_size=1, max_size=6))


@st.composite
def record(draw: st.DrawFn) -> tuple[bytes | None, bytes]:
    """(key, value) of one hostile or valid record."""
    entity = draw(ENTITIES)
    # event times from the past to 10 minutes past the worker's clock (future beyond 30 s), in any order
    fields = {"id": _dumps(entity), "ts": str(draw(st.integers(T0, T0 + 1_200_000))),
              "hr": _dumps(draw(st.floats(0, 300)))}
    kind = draw(st.sampled_from(["valid", "valid", "bytes", "field", "field", "duplicate", "padding", "encoding",
                                 "extra"]))
    if kind == "bytes":
        return b"p1", draw(st.binary(max_size=300))
    if kind == "field":
        fields[draw(st.sampled_from(sorted(fields)))] = draw(HOSTILE)
    if kind == "extra":
        fields[draw(st.text(max_size=5)).replace('"', "")] = draw(HOSTILE)
    body = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items())
    if kind == "duplicate":  # the same field twice: the last one wins, as in every JSON decoder here
        body += f', "hr": {draw(HOSTILE)}'
    if kind == "padding":  # odd sizes: around the 64 KiB bound
        body += ', "pad": "' + "x" * draw(st.integers(MAX_RECORD_BYTES - 80, MAX_RECORD_BYTES + 10)) + '"'
    value = (body + "}").encode("utf-8", "surrogatepass")
    if kind == "encoding":
        value = draw(st.sampled_from([b"\xef\xbb\xbf" + value, value.decode("utf-8", "replace").encode("utf-16"),
                                      value.decode("utf-8", "replace").encode("utf-16-le"), value + b"\xff"]))
    odd_key = draw(st.sampled_from([None] * 6 + ["none", "empty", "not utf-8", "other"]))
    key = {None: entity.encode("utf-8", "surrogatepass"), "none": None, "empty": b"", "not utf-8": b"\xff\xfe",
           "other": draw(st.text(max_size=4)).encode("utf-8", "surrogatepass")}[odd_key]
    return key, value


@pytest.fixture(scope="module")
def topic(redis_url: str) -> Iterator[str]:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{name}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])
    client.close()


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.data_too_large])
@given(st.lists(record(), min_size=1, max_size=25), st.integers(1, 3))
def test_every_record_becomes_one_prediction_or_one_dead_letter(registry: Registry, client: redis.Redis, topic: str,
                                                                batch: list[tuple[bytes | None, bytes]],
                                                                partitions: int) -> None:
    view = dataclasses.replace(VIEW, source_topic=topic)
    scorer = Scorer(registry, "risk")
    scorer.start()
    handler = FusedHandler(view, RedisFeatureStore(client), scorer, group=f"g-{uuid.uuid4().hex[:8]}",
                           predictions_topic="predictions", dlq_topic=f"{topic}.dlq", clock=lambda: NOW_S)
    messages = [FakeMessage(topic, i % partitions, i // partitions, value, key) for i, (key, value) in enumerate(batch)]
    result = handler.process(messages)  # type: ignore[arg-type] - must not raise: no fault here is infrastructure
    assert result.finalize is not None
    result.finalize()  # the state write (real Redis) must not raise either
    seen: list[tuple[int, int]] = []
    for out in result.outputs:
        if out.topic == "predictions":
            _, partition, offset, _variant = orjson.loads(out.value)["prediction_id"].rsplit("-", 3)
            seen.append((int(partition), int(offset)))
        elif out.topic == f"{topic}.dlq":
            headers = dict(out.headers or [])
            seen.append((int(headers["source_partition"]), int(headers["source_offset"])))
            assert headers["error"] and headers["error_class"] == b"RecordError"
            event(headers["error"].decode())
    event(f"predictions: {'some' if any(o.topic == 'predictions' for o in result.outputs) else 'none'}")
    assert sorted(seen) == sorted((m.partition(), m.offset()) for m in messages)  # each exactly once
