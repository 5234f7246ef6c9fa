"""RedisLabelJoin against the session's real Redis (db 11, ids unique per test, keys removed after)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from models.prediction import Prediction
from monitor.label_join import PREFIX, Outcome, RedisLabelJoin

pytestmark = pytest.mark.integration

TTL_S = 120


@pytest.fixture
def client(redis_backend: redis.Redis) -> redis.Redis:
    """Every test of this module on the session's Redis and on the session's Redis Cluster."""
    return redis_backend


@pytest.fixture
def uid(client: redis.Redis) -> Iterator[str]:
    tag = uuid.uuid4().hex[:12]
    yield tag
    keys = list(client.scan_iter(match=PREFIX + f"*{tag}*".encode(), count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def join(client: redis.Redis) -> RedisLabelJoin:
    return RedisLabelJoin(client, ttl_s=TTL_S)


def pred(uid: str, i: int = 0, *, label: int | None = 1, score: float = 0.8, variant: str = "champion",
         version: int = 2) -> Prediction:
    return Prediction(f"{uid}-pred-{i}", f"{uid}-ent-{i}", 1_000 + i, "risk", version, variant, score, label, 0)


def test_prediction_then_label_by_prediction_id(join: RedisLabelJoin, uid: str) -> None:
    p = pred(uid, label=1, score=0.8)
    assert join.remember([p]) == []
    assert join.match([{"prediction_id": p.prediction_id, "label": 1, "label_ts": 5}]) == [
        Outcome("risk", 2, 0, 1, 0.8)]
    assert join.match([{"prediction_id": p.prediction_id, "label": 0}]) == [Outcome("risk", 2, 1, 0, 0.8)]
    assert join.stats.matched == 2


def test_prediction_then_label_by_entity_and_event_ts(join: RedisLabelJoin, uid: str) -> None:
    p = pred(uid, 3, label=0, score=0.1, version=5)
    join.remember([p])
    assert join.match([{"entity_id": p.entity_id, "event_ts": p.event_ts, "label": "1"}]) == [
        Outcome("risk", 5, 1, 1, 0.1)]
    # a label for another event time of the same entity does not match
    assert join.match([{"entity_id": p.entity_id, "event_ts": p.event_ts + 1, "label": 1}]) == []


def test_label_then_prediction_by_entity_and_event_ts(join: RedisLabelJoin, client: redis.Redis,
                                                      uid: str) -> None:
    p = pred(uid, 7, label=1)
    assert join.match([{"entity_id": p.entity_id, "event_ts": p.event_ts, "label": 0}]) == []
    waiting = PREFIX + f"l:{p.entity_id}:{p.event_ts}".encode()
    assert client.get(waiting) == b"0" and 0 < client.ttl(waiting) <= TTL_S
    assert join.stats.pending == 1
    assert join.remember([p]) == [Outcome("risk", 2, 1, 0, 0.8)]
    assert client.exists(waiting) == 0 and join.stats.pending == 0 and join.stats.matched == 1
    assert join.remember([p]) == []  # the waiting label was consumed: no double count


def test_label_then_prediction_by_prediction_id(join: RedisLabelJoin, client: redis.Redis, uid: str) -> None:
    p = pred(uid, 8, label=1)
    assert join.match([{"prediction_id": p.prediction_id, "label": 1}]) == []
    assert join.stats.pending == 1 and join.stats.unmatched_labels == 0
    assert join.remember([p]) == [Outcome("risk", 2, 0, 1, 0.8)]
    assert join.stats.pending == 0
    assert join.remember([p]) == []


def test_predictions_are_stored_with_a_ttl(join: RedisLabelJoin, client: redis.Redis, uid: str) -> None:
    p = pred(uid, 1)
    join.remember([p])
    for key in (PREFIX + b"p:" + p.prediction_id.encode(), PREFIX + f"e:{p.entity_id}:{p.event_ts}".encode()):
        assert 0 < client.ttl(key) <= TTL_S


def test_shadow_and_unlabelled_predictions_are_not_remembered(join: RedisLabelJoin, client: redis.Redis,
                                                              uid: str) -> None:
    shadow, nolabel = pred(uid, 1, variant="shadow"), pred(uid, 2, label=None)
    assert join.remember([shadow, nolabel]) == []
    assert list(client.scan_iter(match=PREFIX + f"*{uid}*".encode())) == []
    assert join.match([{"prediction_id": shadow.prediction_id, "label": 1}]) == []


def test_challenger_predictions_are_joined(join: RedisLabelJoin, uid: str) -> None:
    p = pred(uid, 4, variant="challenger", version=9, label=0, score=0.3)
    join.remember([p])
    assert join.match([{"prediction_id": p.prediction_id, "label": 0}]) == [Outcome("risk", 9, 0, 0, 0.3)]


@pytest.mark.parametrize("label", [
    {"label": 1},                                         # no key at all
    {"prediction_id": "x", "label": "yes"},               # not an int
    {"prediction_id": "x", "label": None},                # no label
    {"prediction_id": "x"},                               # no label
    {"entity_id": "e", "event_ts": "noon", "label": 1},   # bad event_ts
    {"entity_id": "e", "label": 1},                       # half an entity key
])
def test_malformed_labels_are_counted(join: RedisLabelJoin, uid: str, label: dict) -> None:
    assert join.match([label]) == []
    assert join.stats.malformed_labels == 1 and join.stats.pending == 0


def test_a_batch_mixes_matches_waits_and_malformed(join: RedisLabelJoin, uid: str) -> None:
    a, b = pred(uid, 1), pred(uid, 2, label=0, score=0.2)
    join.remember([a])
    out = join.match([{"prediction_id": a.prediction_id, "label": 1},
                      {"entity_id": b.entity_id, "event_ts": b.event_ts, "label": 1},
                      {"label": "?"}])
    assert out == [Outcome("risk", 2, 0, 1, 0.8)]
    assert (join.stats.matched, join.stats.pending, join.stats.malformed_labels) == (1, 1, 1)
    assert join.remember([b]) == [Outcome("risk", 2, 1, 1, 0.2)]
    assert (join.stats.matched, join.stats.pending) == (2, 0)


def test_empty_inputs_do_not_touch_redis(client: redis.Redis) -> None:
    class NoRedis:
        def pipeline(self, **kw: object) -> None:
            raise AssertionError("no round trip expected")

    j = RedisLabelJoin(NoRedis())  # type: ignore[arg-type]
    assert j.remember([]) == [] and j.match([]) == [] and j.match([{"nope": 1}]) == []


def test_the_slice_travels_with_the_prediction_to_its_outcome(join: RedisLabelJoin, uid: str) -> None:
    """Per-slice concept drift needs each joined outcome to know its prediction's slice, in both arrival orders."""
    first, second = pred(uid, 0), pred(uid, 1)
    assert join.remember([first], slice_of=lambda p: "66+") == []
    [outcome] = join.match([{"prediction_id": first.prediction_id, "label": 1}])
    assert outcome.slice == "66+"
    assert join.match([{"prediction_id": second.prediction_id, "label": 0}]) == []  # label first
    [late] = join.remember([second], slice_of=lambda p: "18-40")
    assert (late.slice, late.error) == ("18-40", 1)


def test_a_prediction_marked_by_the_sensor_checks_joins_as_suspect(join: RedisLabelJoin, uid: str) -> None:
    marked = Prediction(f"{uid}-pred-q", f"{uid}-ent-q", 7, "risk", 2, "champion", 0.9, 1, 0, quality={"hr": "spike"})
    early = Prediction(f"{uid}-pred-e", f"{uid}-ent-e", 8, "risk", 2, "champion", 0.9, 1, 0, quality={"hr": "spike"})
    join.match([{"entity_id": early.entity_id, "event_ts": early.event_ts, "label": 0}])  # label first: waits
    assert join.remember([marked, early]) == [Outcome("risk", 2, 1, 0, 0.9, None, True)]
    assert join.match([{"prediction_id": marked.prediction_id, "label": 1}]) == [Outcome("risk", 2, 0, 1, 0.9, None, True)]
    assert join.match([{"prediction_id": pred(uid).prediction_id, "label": 1}]) == []
