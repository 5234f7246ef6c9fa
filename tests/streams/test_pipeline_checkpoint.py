"""The fused handler across checkpoints: state applied over several batches and saved once equals a save after
every batch, byte for byte; a crash before a checkpoint replays from it with the same features and prediction
ids; unsaved states survive a cache eviction; a rollback forgets exactly what was not checkpointed."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from features.store import MemoryFeatureStore
from models.registry import Registry

from . import pipeline_fakes as fakes


def _batches(seed: int, n: int = 60, entities: int = 5) -> list[list]:
    rng = random.Random(seed)
    ms = [fakes.msg(i, f"e{rng.randrange(entities)}", fakes.T0 + i * 700 - rng.randrange(0, 8000),
                    hr=round(rng.uniform(40, 160), 1), partition=0) for i in range(n)]
    out, i = [], 0
    while i < n:
        k = rng.randint(1, 9)
        out.append(ms[i:i + k])
        i += k
    return out


def _scores(results: list) -> dict[str, tuple[float, dict]]:
    return {p.prediction_id: (p.score, p.features) for r in results for p in fakes.predictions(r)}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), every=st.integers(1, 6))
def test_checkpoint_every_few_batches_stores_the_same_bytes_as_every_batch(registry: Registry, seed: int,
                                                                          every: int) -> None:
    batches = _batches(seed)
    per_batch, deferred = MemoryFeatureStore(), MemoryFeatureStore()
    a, b = fakes.make_handler(registry, per_batch), fakes.make_handler(registry, deferred)
    got_a = [fakes.run(a, batch) for batch in batches]
    got_b = []
    for i, batch in enumerate(batches):
        got_b.append(fakes.run(b, batch, finalize=False))
        if i % every == every - 1:
            b.checkpoint()
    b.checkpoint()
    assert _scores(got_a) == _scores(got_b)
    assert fakes.snapshot(per_batch) == fakes.snapshot(deferred)


def test_a_crash_between_checkpoints_replays_with_the_same_ids_and_features(registry: Registry) -> None:
    batches = _batches(3)
    store = MemoryFeatureStore()
    worker = fakes.make_handler(registry, store)
    first = [fakes.run(worker, batch, finalize=False) for batch in batches[:4]]
    worker.checkpoint()  # the last checkpoint before the crash
    lost = [fakes.run(worker, batch, finalize=False) for batch in batches[4:8]]  # published, never checkpointed
    # kill -9: the restarted worker gets the batches after the committed offset again
    restarted = fakes.make_handler(registry, MemoryFeatureStore())
    restarted.store = store
    restarted.pending.store = store
    replayed = [fakes.run(restarted, batch, finalize=False) for batch in batches[4:8]]
    assert _scores(replayed) == _scores(lost)
    rest = [fakes.run(restarted, batch) for batch in batches[8:]]
    reference_store = MemoryFeatureStore()
    reference = fakes.make_handler(registry, reference_store)
    expected = [fakes.run(reference, batch) for batch in batches]
    assert _scores(first + replayed + rest) == _scores(expected)
    assert fakes.snapshot(store) == fakes.snapshot(reference_store)


def test_unsaved_states_survive_eviction_from_a_tiny_cache(registry: Registry) -> None:
    batches = _batches(5, entities=8)
    small, full = MemoryFeatureStore(), MemoryFeatureStore()
    a = fakes.make_handler(registry, small, cache_max_entities=1)
    b = fakes.make_handler(registry, full)
    got_a = [fakes.run(a, batch, finalize=False) for batch in batches]
    a.checkpoint()
    got_b = [fakes.run(b, batch) for batch in batches]
    assert _scores(got_a) == _scores(got_b)
    assert fakes.snapshot(small) == fakes.snapshot(full)


def test_rollback_forgets_what_was_not_checkpointed_and_the_replay_skips_what_was(registry: Registry) -> None:
    batches = _batches(9)
    store = MemoryFeatureStore()
    h = fakes.make_handler(registry, store)
    for batch in batches[:3]:
        fakes.run(h, batch, finalize=False)
    h.checkpoint()
    saved = fakes.snapshot(store)
    for batch in batches[3:6]:
        fakes.run(h, batch, finalize=False)
    h.rollback()
    assert fakes.snapshot(store) == saved and h.watermarks == {0: None}
    again = [fakes.run(h, batch) for batch in batches[:6]]  # the loop rewound to the first offset after it
    assert sum(len(fakes.predictions(r)) for r in again[:3]) == 0  # checkpointed: skipped
    assert h.stats.replayed >= sum(len(b) for b in batches[:3])
