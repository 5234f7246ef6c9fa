"""Tests of the process helpers with small Python child processes (no broker, no Redis)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.exceptions import StackError
from streams.local.procs import free_port, pid_alive, pid_cmdline, port_open, spawn, stop_pid, wait_for_port

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Ignores SIGTERM, so only SIGKILL stops it; prints a marker once the handler is installed.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)",
]
# Starts a grandchild in the same process group, prints its pid, then sleeps.
PARENT_WITH_CHILD = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(c.pid, flush=True); time.sleep(60)",
]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is still alive at the end is killed by pid."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            stop_pid(p.pid, timeout_s=1)


def wait_for_text(path: Path, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.strip():
            return text
        time.sleep(0.02)
    raise AssertionError(f"{path} stayed empty")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_wait_for_port_returns_once_listening_and_raises_otherwise() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        wait_for_port("127.0.0.1", port, 1.0)
        assert port_open("127.0.0.1", port)
    t0 = time.monotonic()
    with pytest.raises(StackError, match=f"127.0.0.1:{port}"):
        wait_for_port("127.0.0.1", port, 0.3)
    assert 0.25 < time.monotonic() - t0 < 30  # waited its timeout; the upper bound is generous: bounded, not fast


def test_spawn_runs_in_its_own_session_and_logs(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "sub" / "child.log"
    p = spawn(
        [sys.executable, "-c", "import os, sys; print(os.getsid(0)); print('oops', file=sys.stderr)"], log
    )
    started.append(p)
    assert p.wait(10) == 0
    out = log.read_text().split()
    assert out == [str(p.pid), "oops"]  # session id == its own pid; stderr in the same log
    assert os.getsid(0) != p.pid


def test_spawn_passes_env_and_appends(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "env.log"
    env = {**os.environ, "DRIFTLINE_TEST_VAR": "xyz"}
    for _ in range(2):
        p = spawn([sys.executable, "-c", "import os; print(os.environ['DRIFTLINE_TEST_VAR'])"], log, env=env)
        started.append(p)
        assert p.wait(10) == 0
    assert log.read_text().split() == ["xyz", "xyz"]


def test_spawn_of_a_missing_binary_raises_stack_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="cannot start"):
        spawn([str(tmp_path / "no-such-binary")], tmp_path / "x.log")


def test_stop_pid_terminates_and_reaps(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    p = spawn(SLEEPER, tmp_path / "s.log")
    started.append(p)
    assert pid_alive(p.pid)
    assert "time.sleep(60)" in (pid_cmdline(p.pid) or "time.sleep(60)")
    assert stop_pid(p.pid, timeout_s=5)
    assert not pid_alive(p.pid)
    assert stop_pid(p.pid)  # already gone: still True


def test_stop_pid_escalates_to_sigkill(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    log = tmp_path / "stubborn.log"
    p = spawn(STUBBORN, log)
    started.append(p)
    wait_for_text(log)
    t0 = time.monotonic()
    assert stop_pid(p.pid, timeout_s=0.3)
    assert not pid_alive(p.pid)
    assert 0.3 <= time.monotonic() - t0 < 30  # SIGTERM was ignored for the whole grace period (upper bound generous)


def test_stop_pid_stops_the_whole_process_group(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "tree.log"
    p = spawn(PARENT_WITH_CHILD, log)
    started.append(p)
    child = int(wait_for_text(log).split()[0])
    assert pid_alive(child) and os.getpgid(child) == p.pid
    try:
        assert stop_pid(p.pid, timeout_s=5)
        deadline = time.monotonic() + 3
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pid_alive(child)
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_pid_alive_for_unknown_and_invalid_pids() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-5)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(10)
    assert not pid_alive(p.pid)
