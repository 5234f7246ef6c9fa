"""``IndexCache.due_on`` (one partition's entities, as a save asks) with the window of recent marks says
what the one-by-one rule says (new, moved, or marked ``refresh_ms`` ago), over random sequences of asks and marks,
entities that move between partitions and back, asked as a dict's keys or a list, clocks that step back, and a
small bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from features.entity_index import IndexCache
from tests.budget import examples


class Reference:
    """The rule, one entity at a time, with the same bound (oldest marks out first)."""

    def __init__(self, max_entities: int) -> None:
        self.max_entities = max_entities
        self.seen: dict[str, tuple[int, int]] = {}

    def due(self, parts: dict[str, int], now_ms: int, refresh_ms: int) -> dict[str, int]:
        return {e: p for e, p in parts.items()
                if (s := self.seen.get(e)) is None or s[0] != p or now_ms - s[1] >= refresh_ms}

    def mark(self, written: dict[str, int], now_ms: int) -> None:
        for e, p in written.items():
            self.seen.pop(e, None)
            self.seen[e] = (p, now_ms)
        while len(self.seen) > self.max_entities:
            del self.seen[next(iter(self.seen))]


steps = st.lists(st.tuples(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 2), max_size=6),
                           st.integers(-50, 400), st.booleans(), st.booleans(), st.integers(0, 60)), max_size=40)


@settings(max_examples=examples(300), deadline=None)
@given(steps, st.integers(1, 200), st.integers(1, 10), st.booleans())
def test_due_is_the_one_by_one_rule(script: list[tuple[dict[str, int], int, bool, bool, int]], refresh_ms: int,
                                    bound: int, as_keys: bool) -> None:
    """``late``: a mark stamped that much before the ask (the writer's clock read before its write)."""
    cache, ref, now = IndexCache(max_entities=bound), Reference(bound), 0
    for parts, step, mark_due, mark_all, late in script:
        now += step  # may step back: a clock is not monotonic across machines
        want = ref.due(parts, now, refresh_ms)
        got: dict[str, int] = {}
        for p in sorted(set(parts.values())):  # as a save asks: one partition's entities at a time
            ids = [e for e, q in parts.items() if q == p]
            # as a dict's keys (the set difference) or as a list (the one-by-one check)
            got.update(cache.due_on(p, dict.fromkeys(ids).keys() if as_keys else ids, now_ms=now,
                                    refresh_ms=refresh_ms))
        assert got == want
        written = parts if mark_all else got if mark_due else {}
        cache.mark(written, now_ms=now - late)
        ref.mark(written, now - late)


def test_an_entity_that_moves_and_comes_back_within_the_window_is_due() -> None:
    """Marked on 0, then on 1, then asked on 0 within the window: the index says 1, so the entry is due again."""
    cache = IndexCache()
    cache.due_on(0, {"a": None}.keys(), now_ms=0, refresh_ms=100)
    cache.mark({"a": 0}, now_ms=0)
    assert cache.due_on(0, {"a": None}.keys(), now_ms=1, refresh_ms=100) == {}
    cache.mark({"a": 1}, now_ms=2)
    assert cache.due_on(0, {"a": None}.keys(), now_ms=3, refresh_ms=100) == {"a": 0}


def test_a_mark_of_more_entities_than_the_bound_keeps_only_the_newest() -> None:
    """Bound 2, three marked at once: the first is forgotten, so asked again within the window it is due."""
    cache = IndexCache(max_entities=2)
    cache.due_on(0, ["a", "b", "c"], now_ms=0, refresh_ms=100)
    cache.mark({"a": 0, "b": 0, "c": 0}, now_ms=0)
    assert cache.due_on(0, {"a": None, "b": None, "c": None}.keys(), now_ms=1, refresh_ms=100) == {"a": 0}
