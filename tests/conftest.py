"""Fixtures shared by several test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A bytes client of the local Redis (127.0.0.1:6379, db 11); the test skips when none answers. Tests delete
    the keys they write (each under a unique tag)."""
    c = redis.Redis(host="127.0.0.1", port=6379, db=11, socket_connect_timeout=1)
    try:
        c.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    yield c
    c.close()
