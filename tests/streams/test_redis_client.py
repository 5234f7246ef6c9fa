"""The one Redis client factory: URL parsing (unit), and against a real Redis and a real 3-master Redis Cluster."""

from __future__ import annotations

import pytest

from streams.exceptions import ConfigError
from streams.local.reach import redis_answers
from streams.local.redis_cluster import LocalCluster
from streams.redis_client import (
    RedisSetupError,
    check_redis,
    is_cluster,
    make_redis,
    parse_redis_url,
    redis_problem,
    safe_url,
)
from streams.settings import Settings


def test_plain_urls_stay_single_node() -> None:
    t = parse_redis_url("rediss://u:pw@h:6380/3")
    assert (t.cluster, t.nodes, t.url) == (False, (("h", 6380),), "rediss://u:pw@h:6380/3")


def test_cluster_urls_name_every_node_and_credentials() -> None:
    t = parse_redis_url("rediss+cluster://user:p%3Aw@a:7000,b:7001,[::1]:7002/0")
    assert t.cluster and t.ssl and (t.username, t.password) == ("user", "p:w")
    assert t.nodes == (("a", 7000), ("b", 7001), ("::1", 7002))


def test_the_setting_makes_a_plain_url_a_cluster() -> None:
    t = parse_redis_url("redis://h:7000", cluster=True)
    assert t.cluster and t.nodes == (("h", 7000),) and not t.ssl


@pytest.mark.parametrize("url", ["redis+cluster://a:1/2", "h:6379", "redis+cluster://", "unix+cluster://x",
                                 "redis+cluster://a:notaport"])
def test_bad_cluster_urls_are_refused_with_the_setting_named(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        parse_redis_url(url)


def test_settings_read_redis_cluster_from_the_environment() -> None:
    assert Settings.from_env({"REDIS_CLUSTER": "1"}).redis_cluster is True
    assert Settings.from_env({}).redis_cluster is False


def test_safe_url_hides_passwords_of_cluster_urls() -> None:
    assert safe_url("redis+cluster://u:secret@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"


@pytest.mark.integration
def test_a_single_node_url_on_a_cluster_node_fails_fast_and_is_not_healthy(redis_cluster: LocalCluster) -> None:
    """The issue's operator: REDIS_URL at one node of a real cluster. Startup refuses it with what to do, and the
    health probe says misconfigured instead of ok."""
    single = make_redis(f"redis://127.0.0.1:{redis_cluster.ports[0]}/0")
    try:
        assert not is_cluster(single)
        with pytest.raises(RedisSetupError, match="redis\\+cluster://"):
            check_redis(single, "redis://127.0.0.1:1/0")
        problem = redis_problem(single)
        assert problem is not None and problem.startswith("misconfigured")
    finally:
        single.close()
    assert "Redis Cluster node" in (redis_answers(f"redis://127.0.0.1:{redis_cluster.ports[0]}/0") or "")


@pytest.mark.integration
def test_a_cluster_url_or_the_setting_gives_a_cluster_client_that_is_healthy(redis_cluster: LocalCluster) -> None:
    for client in (make_redis(redis_cluster.url),
                   make_redis(f"redis://127.0.0.1:{redis_cluster.ports[1]}/0", cluster=True)):
        try:
            assert is_cluster(client) and redis_problem(client) is None
            check_redis(client)
            for i in range(20):  # keys of many slots, on every master: MOVED is followed
                client.set(f"rc-test-{i}", i, px=60_000)
            assert [int(client.get(f"rc-test-{i}")) for i in range(20)] == list(range(20))
        finally:
            client.close()
    assert redis_answers(redis_cluster.url) is None


@pytest.mark.integration
def test_a_single_redis_is_healthy_and_a_closed_port_is_not(redis_url: str) -> None:
    client = make_redis(redis_url)
    try:
        assert not is_cluster(client) and redis_problem(client) is None
    finally:
        client.close()
    dead = make_redis("redis://127.0.0.1:1/0", connect_timeout=0.2)
    assert (redis_problem(dead) or "").startswith("unreachable")
