"""The fused handler's background checkpoints on a real Redis (``PendingState.begin_save``): the same features,
prediction ids and stored bytes as a save after every batch, whenever the saves complete; a load never reads
Redis behind a save on its way; a failed save raises until the rollback, and the replay from the checkpoint before
it ends with the same store as a run that never failed."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from features.redis_store import RedisFeatureStore
from models.registry import Registry
from streams.runtime.pipeline import FusedHandler

from . import pipeline_fakes as fakes
from .test_pipeline_checkpoint import _batches, _scores


def _handler(registry: Registry, url: str) -> tuple[FusedHandler, RedisFeatureStore]:
    store = RedisFeatureStore(redis.Redis.from_url(url))
    h = fakes.make_handler(registry, store)  # type: ignore[arg-type]
    h.group = h.pending.group = f"bg-{uuid.uuid4().hex[:8]}"  # a key space of its own
    return h, store


def _stored(h: FusedHandler, store: RedisFeatureStore, entities: int = 5) -> tuple[dict, int]:
    """Every entity's stored buckets and the stored offset of partition 0, read back from Redis."""
    states, offset = store.load(fakes.VIEW, h.pending.position(0), [f"e{i}" for i in range(entities)])
    return {e: st.buckets(fakes.VIEW) for e, st in states.items()}, offset


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), every=st.integers(1, 5), wait=st.lists(st.booleans(), min_size=20, max_size=20))
def test_background_checkpoints_store_what_a_save_after_every_batch_stores(registry: Registry, redis_url: str,
                                                                          seed: int, every: int,
                                                                          wait: list[bool]) -> None:
    batches = _batches(seed)
    a, store_a = _handler(registry, redis_url)
    b, store_b = _handler(registry, redis_url)
    try:
        got_a = [fakes.run(a, batch) for batch in batches]
        got_b = []
        for i, batch in enumerate(batches):
            got_b.append(fakes.run(b, batch, finalize=False))
            if i % every == every - 1:
                save = b.begin_checkpoint()
                if save is not None and wait[i % len(wait)]:
                    save.result()  # sometimes the caller waits at once, sometimes the next load or save does
        b.checkpoint()
        assert _scores(got_a) == _scores(got_b)
        assert _stored(a, store_a) == _stored(b, store_b)
    finally:
        a.close()
        b.close()


def test_a_load_waits_for_the_save_on_its_way(registry: Registry, redis_url: str) -> None:
    h, store = _handler(registry, redis_url)
    release, reads = threading.Event(), []
    send_saves = store._send_saves

    def slow_send(*args: object, **kw: object) -> None:
        release.wait(10)
        send_saves(*args, **kw)  # type: ignore[arg-type]

    store._send_saves = slow_send  # type: ignore[method-assign]
    fakes.run(h, [fakes.msg(0, "e0"), fakes.msg(1, "e1")], finalize=False)
    save = h.begin_checkpoint()
    assert save is not None and not save.done()
    h.cache.forget({0})  # the next batch's entities must come from Redis
    reader = threading.Thread(target=lambda: reads.append(fakes.run(h, [fakes.msg(2, "e0")], finalize=False)))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive()  # blocked behind the save, not reading Redis before it landed
    release.set()
    reader.join(10)
    got = fakes.predictions(reads[0])[0]
    assert got.features["hr_count_1m"] == 2.0  # e0's first reading came back from Redis with it
    h.close()


def test_a_failed_save_raises_until_rollback_and_the_replay_ends_where_a_clean_run_does(registry: Registry,
                                                                                      redis_url: str) -> None:
    batches = _batches(11)
    h, store = _handler(registry, redis_url)
    ref, ref_store = _handler(registry, redis_url)
    for batch in batches:
        fakes.run(ref, batch)
    for batch in batches[:3]:
        fakes.run(h, batch, finalize=False)
    h.checkpoint()  # the last good checkpoint
    for batch in batches[3:6]:
        fakes.run(h, batch, finalize=False)
    eval_all = store._eval_all
    store._eval_all = lambda *a, **kw: (_ for _ in ()).throw(redis.exceptions.ConnectionError("gone"))  # type: ignore[method-assign]
    save = h.begin_checkpoint()
    assert save is not None
    with pytest.raises(redis.exceptions.ConnectionError):
        save.result()
    store._eval_all = eval_all  # type: ignore[method-assign]
    h.cache.forget({0})
    with pytest.raises(redis.exceptions.ConnectionError):  # the next load says so too, until the rollback
        fakes.run(h, batches[6], finalize=False)
    h.rollback()
    for batch in batches[3:]:  # the loop rewound to the first offset after the last good checkpoint
        fakes.run(h, batch)
    assert _stored(h, store) == _stored(ref, ref_store)
    h.close()
    ref.close()
