"""Fixtures shared by several test packages, and the run's skip policy (``tests/skip_policy.py``).

Redis: every test that needs one gets the session's ``redis_url``: the Redis at ``REDIS_URL`` (default
``redis://127.0.0.1:6379/0``) when it answers, else a ``redis-server`` the session starts on a free port and
stops at the end (the same decision as the embedded stack: ``streams.local.redis_server.ensure_redis``). So
Redis tests run on every machine instead of skipping. ``DRIFTLINE_TEST_OWN_REDIS=1`` always starts one; pointing
``REDIS_URL`` at a closed port (``redis://127.0.0.1:1/0``) shows what a machine without Redis does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from hypothesis import settings as hypothesis_settings

from streams.local.procs import stop_pid
from streams.local.redis_cluster import LocalCluster
from streams.local.redis_server import ensure_redis
from streams.redis_client import make_redis
from tests import skip_policy

# No wall-clock deadline on hypothesis examples: on a loaded 2-core CI machine a deadline is a flaky timing
# assertion, and speed is measured in bench/. The mutation profile (`make mutation`) also draws the same examples
# for every mutant, so a score does not depend on luck.
hypothesis_settings.register_profile("driftline", deadline=None)
hypothesis_settings.register_profile("mutation", parent=hypothesis_settings.get_profile("driftline"),
                                     derandomize=True, print_blob=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "driftline"))


def pytest_configure(config: pytest.Config) -> None:
    skip_policy.register(config)


def with_db(url: str, db: int) -> str:
    """``url`` with its database number replaced.

    >>> with_db("redis://127.0.0.1:6379/0", 11), with_db("redis://h:1", 3)
    ('redis://127.0.0.1:6379/11', 'redis://h:1/3')
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis (see the module docstring); a Redis the session started is stopped at its end."""
    url, pid, _ = ensure_redis(os.environ.get("REDIS_URL"), tmp_path_factory.mktemp("redis"),
                               prefer_own=os.environ.get("DRIFTLINE_TEST_OWN_REDIS") == "1")
    try:
        yield url
    finally:
        if pid is not None:
            stop_pid(pid)


@pytest.fixture
def single_client(redis_url: str) -> Iterator[redis.Redis]:
    """A bytes client of the session's Redis, database 11. Tests delete the keys they write (each under a
    unique tag), and never flush: the Redis may be shared."""
    c = redis.Redis.from_url(with_db(redis_url, 11), socket_connect_timeout=2)
    c.ping()  # a Redis that went away fails the test: it never skips
    yield c
    c.close()


@pytest.fixture
def client(single_client: redis.Redis) -> redis.Redis:
    """``single_client``; a module can override ``client`` with :func:`redis_backend` to run on the cluster too."""
    return single_client


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real Redis Cluster for the session: 3 masters + 3 replicas (``redis-server --cluster-enabled yes`` on free
    ports, joined by ``redis-cli --cluster create``; about 2 s), stopped at the end. Tests write under unique keys;
    the reshard and failover tests move slots and primaries, and leave a healthy cluster behind."""
    with LocalCluster(tmp_path_factory.mktemp("redis-cluster"), masters=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[redis.RedisCluster]:
    """A bytes Redis Cluster client of the session's cluster (made by the one client factory)."""
    c = make_redis(redis_cluster.url)
    yield c  # type: ignore[misc]
    c.close()


@pytest.fixture(params=["redis", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> redis.Redis | redis.RedisCluster:
    """The session's Redis, then the session's Redis Cluster: a module runs its tests on both with
    ``@pytest.fixture def client(redis_backend): return redis_backend``."""
    return request.getfixturevalue("single_client" if request.param == "redis" else "cluster_client")
