"""The one place a Redis client is made: a single Redis or a Redis Cluster, chosen by the URL or a setting.

URLs::

    redis://[user:pw@]host:port[/db]            one Redis (rediss:// for TLS, unix:// for a socket)
    redis+cluster://[user:pw@]h1:p1,h2:p2,...    a Redis Cluster; any reachable node is enough to find the others
    rediss+cluster://...                         the same over TLS

``cluster=True`` (``REDIS_CLUSTER=1``) makes a plain ``redis://host:port`` URL a cluster client too. A cluster has
one database only, so a cluster URL with a database other than 0 is refused.

:func:`check_redis` is the fail-fast startup check (a single-node client pointed at a cluster node would have
every batch answered with ``MOVED``), and :func:`redis_problem` the ``/health`` probe.

Example:
    >>> parse_redis_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001").nodes
    (('10.0.0.1', 7000), ('10.0.0.2', 7001))
    >>> parse_redis_url("redis://h:6380/2").cluster, parse_redis_url("redis://h:6380/0", cluster=True).nodes
    (False, (('h', 6380),))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from streams.exceptions import ConfigError, DriftlineError

__all__ = ["AnyRedis", "RedisSetupError", "RedisTarget", "check_redis", "is_cluster", "make_redis",
           "parse_redis_url", "redis_problem", "safe_url"]

AnyRedis = redis.Redis | RedisCluster
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError)


class RedisSetupError(DriftlineError):
    """Redis answers, but not as configured (a cluster node behind a single-node URL, a cluster that is down)."""


@dataclass(frozen=True)
class RedisTarget:
    """What a Redis URL names."""

    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    url: str  # the URL handed to redis-py for a single Redis (unchanged)
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    db: int = 0


def parse_redis_url(url: str, *, cluster: bool = False) -> RedisTarget:
    """What ``url`` names; ``cluster`` forces a cluster client for a plain URL.

    >>> parse_redis_url("rediss+cluster://u:p%40ss@a:1,b:2").password, parse_redis_url("rediss+cluster://a:1").ssl
    ('p@ss', True)
    >>> parse_redis_url("redis+cluster://a:1/3")
    Traceback (most recent call last):
    ...
    streams.exceptions.ConfigError: REDIS_URL: a Redis Cluster has only database 0, got /3 in redis+cluster://a:1/3
    """
    head, sep, _ = url.partition("://")
    if not sep:
        raise ConfigError(f"REDIS_URL must look like redis://host:port/0 or redis+cluster://h:p,h:p, got {url!r}")
    scheme = head.lower()
    is_cluster_url = scheme.endswith("+cluster")
    if not is_cluster_url and not cluster:
        return RedisTarget(False, _nodes(url), url)
    base = CLUSTER_SCHEMES.get(scheme, scheme)
    if base not in ("redis", "rediss"):
        raise ConfigError(f"REDIS_URL: a Redis Cluster needs redis+cluster:// or rediss+cluster://, got {url!r}")
    parts = urlsplit(f"{base}://{url.partition('://')[2]}")
    netloc = parts.netloc
    cred, _, hosts = netloc.rpartition("@")
    user, _, pw = cred.partition(":")
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ConfigError(f"REDIS_URL: a Redis Cluster has only database 0, got /{db} in {safe_url(url)}")
    nodes = tuple(_host_port(h) for h in hosts.split(",") if h)
    if not nodes:
        raise ConfigError(f"REDIS_URL names no cluster node: {safe_url(url)}")
    return RedisTarget(True, nodes, url, unquote(user) or None, unquote(pw) or None, base == "rediss")


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "6379")
    try:
        return host.strip("[]"), int(port)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL: bad node address {text!r}") from exc


def _nodes(url: str) -> tuple[tuple[str, int], ...]:
    parts = urlsplit(url)
    return ((parts.hostname or "", parts.port or 6379),) if parts.hostname else ()


def make_redis(url: str, *, cluster: bool = False, socket_timeout: float | None = 5.0,
               connect_timeout: float = 2.0, health_check_interval: int = 10, **kwargs: Any) -> AnyRedis:
    """A bytes client of what ``url`` names (hiredis parser when installed), short timeouts by default so an
    outage surfaces quickly. A cluster client follows ``MOVED`` and ``ASK`` and refreshes its slot map itself.

    >>> type(make_redis("redis://127.0.0.1:1/0")).__name__  # connects on first use; a cluster client at once
    'Redis'
    """
    target = parse_redis_url(url, cluster=cluster)
    common: dict[str, Any] = dict(socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout, **kwargs)
    if not target.cluster:
        return redis.Redis.from_url(url, health_check_interval=health_check_interval, **common)
    nodes = [ClusterNode(h, p) for h, p in target.nodes]
    return RedisCluster(startup_nodes=nodes, username=target.username, password=target.password, ssl=target.ssl,
                        require_full_coverage=True, **common)


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client."""
    return isinstance(client, RedisCluster)


def check_redis(client: AnyRedis, url: str = "") -> None:
    """Fail fast at startup: raise :class:`RedisSetupError` unless ``client`` answers and its kind matches the
    server (a single-node client on a cluster node; a cluster whose state is not ``ok``). Connection errors
    propagate as redis-py raises them."""
    where = f" at {safe_url(url)}" if url else ""
    if is_cluster(client):
        info = client.cluster_info()  # type: ignore[union-attr]
        state = info.get("cluster_state") if isinstance(info, dict) else None
        if state != "ok":
            raise RedisSetupError(f"the Redis Cluster{where} reports cluster_state:{state}; fix the cluster "
                                  "(redis-cli --cluster check) before starting workers")
        return
    client.ping()
    enabled = client.info("cluster").get("cluster_enabled")
    if str(enabled) == "1":
        raise RedisSetupError(
            f"the Redis{where} is a Redis Cluster node, but REDIS_URL names a single Redis: every write outside "
            "this node's slots would fail with MOVED. Use REDIS_URL=redis+cluster://host:port[,host:port...] "
            "(or set REDIS_CLUSTER=1)")


def redis_problem(client: AnyRedis) -> str | None:
    """The ``/health`` check: None when ``client`` can serve (PING; on a cluster, every slot covered); else why.
    A single-node client on a cluster node is reported as such, not as ``ok``."""
    try:
        check_redis(client)
    except RedisSetupError as exc:
        return f"misconfigured: {exc}"
    except REDIS_ERRORS as exc:
        return f"unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return None


def safe_url(url: str) -> str:
    """A Redis URL without its password.

    >>> safe_url("rediss://user:pw@h:6380/0"), safe_url("redis+cluster://:pw@a:1,b:2")
    ('rediss://user:***@h:6380/0', 'redis+cluster://:***@a:1,b:2')
    """
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"
