"""``features.redis_packed``: the same EVALSHA bytes as redis-py's pipeline, and the same answers from a real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

from features.redis_packed import pack_evalsha, packable, start_packed_many
from streams.local.procs import free_port

arguments = st.one_of(st.binary(max_size=40), st.integers(-2**63, 2**63 - 1), st.text(max_size=10))


@given(st.lists(st.binary(min_size=1, max_size=30), max_size=5), st.lists(arguments, max_size=12))
def test_a_call_packs_as_redis_py_packs_it(keys: list[bytes], args: list) -> None:
    sha = "a" * 40
    expected = b"".join(Connection().pack_commands([("EVALSHA", sha, len(keys), *keys, *args)]))
    assert pack_evalsha(sha, keys, args) == expected


def started(client: redis.Redis, sha: str, calls: list, *, background: bool = False):
    """``calls`` (keys, args) packed and written; the function that reads their answers (as the store does)."""
    return start_packed_many(client, [pack_evalsha(sha, keys, args) for keys, args in calls], background=background)


def test_only_a_single_redis_is_packed(client: redis.Redis) -> None:
    assert packable(client)
    assert not packable(client.pipeline())


@pytest.mark.integration
def test_answers_and_reply_errors_come_back_in_order(client: redis.Redis) -> None:
    key = f"test-packed-{uuid.uuid4().hex}".encode()
    echo = client.script_load("return {KEYS[1], #ARGV, ARGV[1] or 'none'}")
    failing = client.script_load("return redis.error_reply('planted')")
    try:
        answers = started(client, echo, [([key], [b"x", 7]), ([key], [])])()
        assert answers == [[key, 2, b"x"], [key, 0, b"none"]]
        bad = started(client, failing, [([key], [])])()
        assert isinstance(bad[0], redis.exceptions.ResponseError) and "planted" in str(bad[0])
        missing = started(client, "0" * 40, [([key], [])])()
        assert isinstance(missing[0], redis.exceptions.NoScriptError)
        assert client.ping()  # the connection went back to the pool whole
    finally:
        client.delete(key)


def test_a_dead_server_raises_a_connection_error() -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1))
    with pytest.raises(redis.exceptions.ConnectionError):
        started(dead, "0" * 40, [([b"k"], [])])()


@pytest.mark.integration
def test_started_calls_larger_than_the_socket_buffers_are_answered_in_order(client: redis.Redis) -> None:
    """The writer thread: calls of several MB each (Redis reads one whole, runs it, then reads on), written while
    the caller goes on using the client on other connections; the answers are read afterwards, in order."""
    key = f"test-packed-{uuid.uuid4().hex}".encode()
    count = client.script_load("redis.call('INCRBY', KEYS[1], #ARGV) return #ARGV")
    sizes = [60_000, 1, 90_000, 30_000]
    try:
        answers = started(client, count, [([key], [b"v" * 40] * n) for n in sizes], background=True)
        assert client.ping()  # another connection serves meanwhile
        assert answers() == sizes
        assert int(client.get(key)) == sum(sizes)
        assert client.ping()  # the writer's connection went back to the pool whole
    finally:
        client.delete(key)


def test_a_started_call_on_a_dead_server_raises_a_connection_error() -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1))
    with pytest.raises(redis.exceptions.ConnectionError):  # at the start (the pool connects) or when read
        started(dead, "0" * 40, [([b"k"], [])], background=True)()
