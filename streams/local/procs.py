"""Process helpers for the embedded stack: free ports, spawning daemons, waiting for them, stopping them.

Every process is started in its own session (``start_new_session=True``), so its pid is also its process
group id: stopping it signals the whole group, and a Ctrl-C in the caller's terminal does not reach it.
Nothing here kills by name; every stop is by pid.

Example:
    >>> port = free_port()
    >>> 1024 <= port <= 65535
    True
    >>> pid_alive(os.getpid())
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from streams.exceptions import StackError

__all__ = ["free_port", "pid_alive", "pid_cmdline", "port_open", "spawn", "stop_pid", "wait_for_port"]

_POLL_S = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back, close).

    Example:
        >>> a = free_port()
        >>> isinstance(a, int) and a > 0
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.25) -> bool:
    """True when a TCP connect to ``host:port`` succeeds within ``timeout_s``.

    Example:
        >>> with socket.socket() as srv:
        ...     srv.bind(("127.0.0.1", 0)); srv.listen()
        ...     port_open("127.0.0.1", srv.getsockname()[1])
        True
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until ``host:port`` accepts a TCP connection; raise :class:`StackError` after ``timeout_s``.

    Example:
        >>> wait_for_port("127.0.0.1", free_port(), 0.1)
        Traceback (most recent call last):
        ...
        streams.exceptions.StackError: nothing listens on 127.0.0.1:... after 0.1 s; ...
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if port_open(host, port, timeout_s=min(0.25, max(timeout_s, 0.01))):
            return
        if time.monotonic() >= deadline:
            raise StackError(
                f"nothing listens on {host}:{port} after {timeout_s:g} s; "
                "check the process log in the run directory"
            )
        time.sleep(_POLL_S)


def spawn(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group with stdout and stderr appended to ``log_path``.

    ``env`` replaces the environment when given (pass ``{**os.environ, ...}`` to extend it). Raises
    :class:`StackError` when the executable cannot be started.

    Example:
        >>> import tempfile
        >>> log = Path(tempfile.mkdtemp()) / "echo.log"
        >>> p = spawn([sys.executable, "-c", "print('hello')"], log)
        >>> p.wait(10), log.read_text().strip()
        (0, 'hello')
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {argv[0]!r}: {exc}; is it installed and executable?") from exc


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our exited child (so it does not linger as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but not been reaped (Linux ``/proc``; False where unknown)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces or ')'.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "Z"


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and has not exited (zombies count as gone).

    Reaps the process first if it is an exited child of ours.

    Example:
        >>> p = subprocess.Popen([sys.executable, "-c", "pass"]); _ = p.wait(10)
        >>> pid_alive(p.pid)
        False
    """
    if pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not _is_zombie(pid)


def pid_cmdline(pid: int) -> str | None:
    """The command line of ``pid`` as one space-joined string, or None when it cannot be read.

    Used to check that a pid recorded in a state file still belongs to the program we started (pids are
    reused), before signalling it.

    Example:
        >>> "python" in (pid_cmdline(os.getpid()) or "python").lower()
        True
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        return None
    try:  # macOS / BSD: no /proc
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _signal(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid``, or to ``pid`` alone if it leads no group."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def stop_pid(pid: int, timeout_s: float = 5.0) -> bool:
    """Stop ``pid`` and its process group: SIGTERM, wait up to ``timeout_s``, then SIGKILL.

    Returns True when the process is gone (also when it was already gone), False if it survived SIGKILL.

    Example:
        >>> p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        >>> stop_pid(p.pid, timeout_s=5)
        True
        >>> pid_alive(p.pid)
        False
    """
    if not pid_alive(pid):
        return True
    try:
        leader = os.getpgid(pid) == pid
    except OSError:
        leader = False
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout_s):
        _signal(pid, signal.SIGKILL)
        if not _wait_gone(pid, 2.0):
            return False
    if leader:  # the leader is gone; do not leave children of its group behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return True
