"""Fail fast and explain: before a command that needs the broker or Redis runs, check both answer.

One place for the whole CLI (``streams.local.cli.main`` calls :func:`require` with what the command needs):
within ~3 s a command either starts, or exits non-zero with one line that says what it tried, where that
address came from and what to do (``driftline up``, or the variable to set). Unexpected errors become one line
too (:func:`one_line`); ``--debug`` shows the traceback.

Example:
    >>> from streams.settings import Settings
    >>> from streams.local.procs import free_port
    >>> s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    >>> require(s, {"broker"}, origin={"broker": "from KAFKA_BOOTSTRAP_SERVERS"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.local.reach.Unreachable: cannot reach the Kafka broker at 127.0.0.1:...
"""

from __future__ import annotations

import socket
import time
from collections.abc import Collection, Mapping

from streams.exceptions import DriftlineError
from streams.settings import Settings

__all__ = ["Unreachable", "broker_answers", "one_line", "redis_answers", "require"]


class Unreachable(DriftlineError):
    """The broker or Redis a command needs does not answer."""


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port`` pairs of a bootstrap list (IPv6 in brackets).

    >>> _hosts("a:9092, [::1]:9093,bad")
    [('a', 9092), ('::1', 9093)]
    """
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        if port.isdigit() and host:
            out.append((host.strip("[]"), int(port)))
    return out


def broker_answers(settings: Settings, timeout_s: float = 2.0) -> str | None:
    """None when a bootstrap server accepts TCP and answers a metadata request; else what went wrong."""
    deadline = time.monotonic() + timeout_s
    errors = []
    hosts = _hosts(settings.kafka.bootstrap_servers)
    if not hosts:
        return f"no host:port in {settings.kafka.bootstrap_servers!r}"
    for host, port in hosts:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                break
        except OSError as exc:
            errors.append(f"{host}:{port}: {exc.strerror or exc}")
    else:
        return "; ".join(errors)
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    quiet = {**settings.kafka.client_config(), "log_level": 0, "logger": _Silent()}
    try:
        AdminClient(quiet).list_topics(timeout=max(0.2, deadline - time.monotonic()))
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        return f"no metadata answer ({getattr(err, 'str', lambda: str(err))()})"
    return None


class _Silent:
    """A logger for librdkafka that drops its lines (the one-line error says what matters)."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    debug = info = warning = error = critical = exception = log


def redis_answers(url: str, timeout_s: float = 1.0, *, cluster: bool = False) -> str | None:
    """None when Redis at ``url`` (a Redis Cluster for ``redis+cluster://`` or ``cluster``) answers as configured
    within ``timeout_s``; else the error (a single-node URL on a cluster node is one: ``streams.redis_client``)."""
    from streams.redis_client import REDIS_ERRORS, RedisSetupError, check_redis, make_redis

    try:
        client = make_redis(url, cluster=cluster, connect_timeout=timeout_s, socket_timeout=timeout_s)
    except (ValueError, DriftlineError) as exc:
        return f"bad URL: {exc}"
    except REDIS_ERRORS as exc:  # a cluster client connects at once
        return str(exc).split("\n")[0]
    try:
        check_redis(client)
        return None
    except RedisSetupError as exc:
        return str(exc)
    except REDIS_ERRORS as exc:
        return str(exc).split("\n")[0]
    finally:
        client.close()


def require(settings: Settings, needs: Collection[str], *, origin: Mapping[str, str] | None = None) -> None:
    """Raise :class:`Unreachable` unless what ``needs`` names (``broker``, ``redis``) answers.

    ``origin`` says where each address came from (a found stack, an environment variable, the default).
    """
    origin = origin or {}
    if "broker" in needs:
        problem = broker_answers(settings)
        if problem is not None:
            where = f" ({origin['broker']})" if origin.get("broker") else ""
            raise Unreachable(
                f"cannot reach the Kafka broker at {settings.kafka.bootstrap_servers}{where}: {problem.rstrip('.')}. "
                "Start the embedded stack with `driftline up`, or set KAFKA_BOOTSTRAP_SERVERS to your cluster")
    if "redis" in needs:
        problem = redis_answers(settings.redis_url, cluster=settings.redis_cluster)
        if problem is not None:
            where = f" ({origin['redis']})" if origin.get("redis") else ""
            raise Unreachable(f"cannot reach Redis at {_safe_url(settings.redis_url)}{where}: {problem.rstrip('.')}. "
                              "Start the embedded stack with `driftline up`, or set REDIS_URL")


def _safe_url(url: str) -> str:
    """A Redis URL without its password.

    >>> _safe_url("rediss://user:pw@h:6380/0")
    'rediss://user:***@h:6380/0'
    """
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"


def one_line(exc: BaseException) -> str:
    """An error as one line for the terminal: its type (unless a DriftlineError) and first line.

    >>> one_line(ValueError("bad\\nmore")), one_line(Unreachable("cannot reach x"))
    ('ValueError: bad (run with --debug for the traceback)', 'cannot reach x')
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, DriftlineError):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"
