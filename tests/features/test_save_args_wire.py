"""The save's counts, passed to redis-py as bytes, put the same command on the wire as the ints they stand for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from features.redis_store import _STRING_KEY, _count


@given(st.integers(0, 10_000), st.binary(max_size=20))
def test_a_count_packs_as_its_int(n: int, blob: bytes) -> None:
    pack = Connection().pack_command
    assert pack("EVALSHA", b"sha", 1, b"key", _count(n), blob) == pack("EVALSHA", b"sha", 1, b"key", n, blob)


def test_the_string_key_marker_packs_as_minus_one_and_zero() -> None:
    pack = Connection().pack_command
    assert pack("EVALSHA", *_STRING_KEY) == pack("EVALSHA", -1, 0)
