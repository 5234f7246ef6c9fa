"""A stale owner on the real broker and Redis: the offset compare-and-set refuses it, the replay guard keeps the
retried batch from counting twice, and the checks below fail when either guard is planted out.

The failover, step by step (deterministic: the real pipeline handlers and the real ``BatchLoop.deliver`` are
driven by hand on records consumed from the broker):

1. the old owner processes a big batch (two thirds of every partition) from an empty store, then stalls before
   its save (a long GC pause, a frozen VM);
2. the partitions move to a new owner, which processes and saves the first third;
3. the old owner wakes up and delivers: the save must be refused by the compare-and-set of ``save_state.lua``
   (its new offset is *ahead* of the stored one, so only the CAS, not the backwards-move check, can refuse it);
4. the partitions come back to the old owner; its loop retries the batch: the store's offset must make it skip
   the first third (the replay guard), then it processes the rest.

Outcome checked: the refusal is a ``StaleOffsetError`` (not an ``OffsetRegressionError``), every event got a
prediction, and the window state in Redis equals an offline recomputation over all events. The planted-bug
variants (the CAS removed from a copy of the Lua script; the engine's replay guard removed) show that these
checks fail without each guard.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

import features.redis_store
import streams.runtime.pipeline
from features.engine import FeatureEngine
from features.exceptions import OffsetRegressionError, StaleOffsetError
from streams.local.simulator import SimConfig, generate
from streams.runtime.workers import build_pipeline

from .test_scale_out import (  # noqa: F401 - the env fixture and helpers shared with the scale-out tests
    MODEL,
    PARTITIONS,
    assert_state_matches_offline,
    env,
    expected_prediction_ids,
    produce_all,
)

pytestmark = pytest.mark.integration

CAS_LINE = "if cur ~= tonumber(ARGV[1]) then return {0, stored} end\n"


def consume_all(settings, topic: str, n: int) -> list[Message]:  # noqa: ANN001
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "stale-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    out: list[Message] = []
    try:
        for _ in range(120):
            out += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
            if len(out) >= n:
                break
    finally:
        consumer.close()
    assert len(out) == n, f"consumed {len(out)} of {n} records"
    return out


def prefix(messages: list[Message], share: float) -> list[Message]:
    """The first ``share`` of every partition's records, in offset order."""
    by_part: dict[int, list[Message]] = defaultdict(list)
    for m in messages:
        by_part[m.partition()].append(m)
    out = []
    for ms in by_part.values():
        ms.sort(key=lambda m: m.offset())
        out += ms[: math.floor(len(ms) * share)]
    return out


@dataclass
class Outcome:
    refused: BaseException | None = None
    predicted: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)


def failover(settings, view, sim) -> Outcome:  # noqa: ANN001
    """Steps 1-4 of the module docstring; what the guards' checks saw."""
    messages = consume_all(settings, view.source_topic, len(sim))
    first_third, two_thirds = prefix(messages, 1 / 3), prefix(messages, 2 / 3)
    assert len(first_third) < len(two_thirds) < len(messages)
    partitions = [TopicPartition(view.source_topic, p) for p in range(PARTITIONS)]
    old_worker, old = build_pipeline(settings, view, MODEL, instance="old-owner")
    new_worker, new = build_pipeline(settings, view, MODEL, instance="new-owner")
    out = Outcome()

    def deliver(worker, result) -> None:  # noqa: ANN001 - the loop's produce -> flush -> finalize (save)
        out.predicted |= {orjson.loads(o.value)["prediction_id"] for o in result.outputs
                          if o.topic == settings.topics.predictions}
        worker.loop.deliver(result)

    try:
        old.on_assign(partitions)
        stalled = old.process(two_thirds)  # 1. computed, not yet saved
        new.on_assign(partitions)  # 2. the group moved the partitions on
        deliver(new_worker, new.process(first_third))
        try:  # 3. the old owner wakes up
            deliver(old_worker, stalled)
        except StaleOffsetError as exc:
            out.refused = exc
        new.on_revoke(partitions)  # 4. the partitions come back; the loop retries the rewound batch
        old.on_revoke(partitions)
        old.on_assign(partitions)
        deliver(old_worker, old.process(two_thirds))
        done = {(m.partition(), m.offset()) for m in two_thirds}
        deliver(old_worker, old.process([m for m in messages if (m.partition(), m.offset()) not in done]))
    finally:
        for worker in (old_worker, new_worker):
            worker.loop.consumer.close()
            for close in worker.closers:
                close()
    if type(out.refused) is not StaleOffsetError:  # an OffsetRegressionError would mean the CAS was never reached
        out.violations.append(f"stale save not refused by the CAS: {out.refused!r}")
    if out.predicted != expected_prediction_ids(view, sim) | out.predicted:
        out.violations.append("events without a prediction")
    try:
        assert_state_matches_offline(settings, view, sim)
    except AssertionError as exc:
        out.violations.append(f"state differs from the offline recomputation: {str(exc)[:200]}")
    return out


@pytest.fixture()
def small_sim(env):  # noqa: ANN001, ANN201, F811 - a shorter stream than the scale-out tests' (same topics and model)
    settings, view, _ = env
    sim = list(generate(SimConfig(entities=30, rate=500, duration_s=2.0, seed=11, time_scale=30.0)))
    produce_all(settings, view.source_topic, sim)
    return settings, view, sim


def test_a_stale_owner_is_refused_by_the_cas_and_the_state_stays_exact(small_sim) -> None:  # noqa: ANN001
    settings, view, sim = small_sim
    out = failover(settings, view, sim)
    assert out.violations == []
    assert not isinstance(out.refused, OffsetRegressionError)
    assert out.predicted >= expected_prediction_ids(view, sim)


class _NoReplayGuard(FeatureEngine):
    """The planted bug: the engine ignores the stored offset and applies replayed events again."""

    def process(self, states, events, *, watermark_ms, min_offset=-1):  # noqa: ANN001, ANN201
        return super().process(states, events, watermark_ms=watermark_ms, min_offset=-1)


@pytest.mark.parametrize("planted", ["cas_removed", "replay_guard_removed"])
def test_the_failover_checks_catch_a_planted_bug(small_sim, planted: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    settings, view, sim = small_sim
    if planted == "cas_removed":
        script = features.redis_store.SAVE_SCRIPT
        assert script.count(CAS_LINE) == 1, "save_state.lua changed: update the planted copy"
        monkeypatch.setattr(features.redis_store, "SAVE_SCRIPT", script.replace(CAS_LINE, ""))
    else:
        monkeypatch.setattr(streams.runtime.pipeline, "FeatureEngine", _NoReplayGuard)
    out = failover(settings, view, sim)
    expected = {"cas_removed": "stale save not refused", "replay_guard_removed": "state differs"}[planted]
    assert any(v.startswith(expected) for v in out.violations), out.violations
