"""The report's history in a real Redis: the same answers as the in-memory twin, capped, time ranges, TTL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from monitor.history import MemoryHistory
from streams.runtime.history_store import RedisHistory, history_key


@pytest.fixture
def client(redis_backend: redis.Redis) -> redis.Redis:
    """Every test of this module on the session's Redis and on the session's Redis Cluster."""
    return redis_backend


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    p = f"test-history-{uuid.uuid4().hex[:8]}"
    yield p
    for key in client.scan_iter(f"{p}:*"):
        client.delete(key)


def test_redis_and_memory_history_answer_alike(client: redis.Redis, prefix: str) -> None:
    stores = [RedisHistory(client, prefix=prefix), MemoryHistory()]
    now = 1_800_000_000_000  # record times are the writer's; Redis ids are its own (read with a skew margin)
    snaps = [{"ts": now + i * 1000, "version": 1, "new": i, "psi": {"x": 0.01 * i}} for i in range(10)]
    events = [{"ts": now + 3500, "kind": "alert", "action": "trigger", "label": "é ✓"}]
    for store in stores:
        store.write("m-a", snaps, events)
        store.write("m-b", snaps[:1])
    for lo, hi in ((now, now + 9000), (now + 2000, now + 4000), (now + 20_000, now + 30_000)):
        answers = [(s.snapshots("m-a", lo, hi), s.events("m-a", lo, hi)) for s in stores]
        assert answers[0] == answers[1]
    assert [s.models() for s in stores] == [["m-a", "m-b"]] * 2


def test_redis_history_is_capped_and_expires(client: redis.Redis, prefix: str) -> None:
    store = RedisHistory(client, prefix=prefix, max_snapshots=100, max_events=100, ttl_s=3600)
    for chunk in range(10):
        store.write("m", [{"ts": chunk * 100 + i} for i in range(100)])
    key = history_key(prefix, "m", "snapshots")
    assert client.xlen(key) < 300  # MAXLEN ~ 100: trimmed by whole nodes, never unbounded
    assert 0 < client.ttl(key) <= 3600
    kept = store.snapshots("m", 0, 10_000)
    assert kept[-1]["ts"] == 999 and kept[0]["ts"] > 0  # the newest kept, the oldest trimmed


def test_a_malformed_entry_is_skipped(client: redis.Redis, prefix: str) -> None:
    store = RedisHistory(client, prefix=prefix)
    client.xadd(history_key(prefix, "m", "events"), {"d": b"{not json"})
    store.write("m", events=[{"ts": 5, "kind": "ack"}])
    assert store.events("m", 0, 10) == [{"ts": 5, "kind": "ack"}]
