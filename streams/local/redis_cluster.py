"""A local Redis Cluster from ``redis-server`` processes, for tests and benchmarks (never for production).

``LocalCluster(run_dir, masters=3, replicas=1).start()`` starts ``masters * (1 + replicas)`` nodes with
``redis-server --cluster-enabled yes`` on free ports of 127.0.0.1 (each node's bus port, port + 10000, free too),
joins them with ``redis-cli --cluster create ... --cluster-yes``, waits for ``cluster_state:ok`` on every node and
gives ``url`` (``redis+cluster://127.0.0.1:p1,...``). ``stop()`` stops every process it started.

Example (needs redis-server and redis-cli on PATH)::

    with LocalCluster(tmp_dir, masters=3) as c:
        client = make_redis(c.url)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from streams.exceptions import StackError
from streams.local.procs import spawn, stop_pid
from streams.local.redis_server import find_redis_server

__all__ = ["LocalCluster", "cluster_ports"]

BUS_OFFSET = 10_000


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(n: int) -> list[int]:
    """``n`` ports that are free on 127.0.0.1 together with their cluster bus ports (port + 10000)."""
    out: list[int] = []
    while len(out) < n:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + BUS_OFFSET < 65536 and port not in out and _free(port + BUS_OFFSET):
            out.append(port)
        elif port + BUS_OFFSET >= 65536:  # ephemeral ports are high: pick below from a base instead
            for cand in range(20_000 + (port % 20_000), 55_000):
                if cand not in out and _free(cand) and _free(cand + BUS_OFFSET):
                    out.append(cand)
                    break
    return out


def _info(raw: object) -> dict[str, str]:
    """CLUSTER INFO as a dict, whether redis-py parsed it or not."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class LocalCluster:
    """A throwaway Redis Cluster of ``masters`` primaries with ``replicas`` replicas each."""

    def __init__(self, run_dir: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> None:
        if masters < 3:
            raise StackError("redis-cli --cluster create needs at least 3 masters")
        self.run_dir = Path(run_dir)
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self.pids: list[int] = []

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (for CLUSTER commands)."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True)

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        binary, cli = find_redis_server(), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise StackError("a local Redis Cluster needs redis-server and redis-cli on PATH (apt install redis)")
        self.ports = cluster_ports(self.masters * (1 + self.replicas))
        try:
            for port in self.ports:
                d = self.run_dir / f"node-{port}"
                d.mkdir(parents=True, exist_ok=True)
                argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                        "--cluster-config-file", str(d / "nodes.conf"), "--cluster-node-timeout",
                        str(self.node_timeout_ms), "--save", "", "--appendonly", "no", "--dir", str(d),
                        "--daemonize", "no"]  # fmt: skip
                self.pids.append(spawn(argv, d / "redis.log").pid)
            self._wait(lambda: all(self._answers(p) for p in self.ports), timeout_s, "nodes to answer PING")
            addrs = [f"127.0.0.1:{p}" for p in self.ports]
            done = subprocess.run([cli, "--cluster", "create", *addrs, "--cluster-replicas", str(self.replicas),
                                   "--cluster-yes"], capture_output=True, text=True, timeout=timeout_s)
            if done.returncode != 0:
                raise StackError(f"redis-cli --cluster create failed: {done.stdout[-400:]} {done.stderr[-400:]}")
            self._wait(self._ready, timeout_s, "cluster_state:ok on every node")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self, port: int) -> bool:
        try:
            return bool(self.node(port).ping())
        except (redis.RedisError, OSError):
            return False

    def _ready(self) -> bool:
        try:
            infos = [self.node(p).execute_command("CLUSTER INFO") for p in self.ports]
        except (redis.RedisError, OSError):
            return False
        want = str(len(self.ports))
        return all(_info(i).get("cluster_state") == "ok" and _info(i).get("cluster_known_nodes") == want
                   for i in infos)

    @staticmethod
    def _wait(check, timeout_s: float, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise StackError(f"local Redis Cluster: timed out waiting for {what}")

    def primaries(self) -> list[int]:
        """Ports of the current primaries (a failover changes them)."""
        return [p for p in self.ports if self._role(p) == "master"]

    def replicas_of(self, primary: int) -> list[int]:
        """Ports of the replicas of ``primary``."""
        pid = self.node(primary).cluster("MYID")
        return [p for p in self.ports if p != primary and self._role(p) == "slave"
                and self.node(p).info("replication").get("master_port") == primary
                and pid]

    def _role(self, port: int) -> str:
        return str(self.node(port).info("replication").get("role"))

    def stop(self) -> None:
        for pid in self.pids:
            stop_pid(pid)
        self.pids = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
