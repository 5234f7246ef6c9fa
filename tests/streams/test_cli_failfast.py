"""A command that needs the broker or Redis and cannot reach it: one line naming what it tried and what to do,
a non-zero exit, no traceback (unless --debug); the stack is found from any directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.local.cli import main
from streams.local.discovery import find_run_dir, forget_stack, remember_stack
from streams.local.procs import free_port
from streams.local.reach import Unreachable


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing listens where the settings point; no stack is found from the working directory."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("DRIFTLINE_RUN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv,what,variable", [
    (["topics"], "Kafka broker", "KAFKA_BOOTSTRAP_SERVERS"),
    (["produce", "--duration", "1"], "Kafka broker", "KAFKA_BOOTSTRAP_SERVERS"),
    (["control", "rollback", "--version", "1"], "Kafka broker", "KAFKA_BOOTSTRAP_SERVERS"),
    (["run", "monitor"], "Kafka broker", "KAFKA_BOOTSTRAP_SERVERS"),
    (["report"], "Redis", "REDIS_URL"),
])
def test_unreachable_dependency_fails_fast_with_one_line(nowhere: Path, capsys: pytest.CaptureFixture[str],
                                                         argv: list[str], what: str, variable: str) -> None:
    started = time.monotonic()
    rc = main(argv)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    assert f"cannot reach the {what}" in err or f"cannot reach {what}" in err
    assert "`driftline up`" in err and variable in err and f"from {variable}" in err
    assert "Traceback" not in err
    assert elapsed < 8, elapsed  # a hang bound, not a benchmark: ~0.01 s idle here (refused at once)


def test_debug_shows_the_traceback(nowhere: Path) -> None:
    with pytest.raises(Unreachable):
        main(["--debug", "topics"])


def test_as_a_process_one_line_on_stderr_and_exit_2(nowhere: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "streams.local.cli", "topics"], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ), cwd=nowhere)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("driftline: cannot reach the Kafka broker")


def test_an_unexpected_error_is_one_line_too(nowhere: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.local.cli as cli

    def boom(_args: object) -> int:
        raise KeyError("model")

    monkeypatch.setitem(cli.COMMANDS, "down", boom)
    assert main(["down"]) == 1
    assert capsys.readouterr().err.strip() == "driftline: KeyError: 'model' (run with --debug for the traceback)"


def test_the_stack_is_found_upward_and_from_anywhere(tmp_path: Path) -> None:
    project, elsewhere, state = tmp_path / "proj", tmp_path / "elsewhere", tmp_path / "state"
    run = project / ".driftline" / "run"
    run.mkdir(parents=True)
    (project / "src" / "deep").mkdir(parents=True)
    elsewhere.mkdir()
    env = {"XDG_STATE_HOME": str(state)}
    assert not (find_run_dir(env, elsewhere).path / "stack.json").exists()  # nothing yet
    (run / "stack.json").write_text(json.dumps({}))
    found = find_run_dir(env, project / "src" / "deep")
    assert found.path == run and found.registry == project / ".driftline" / "registry"
    remember_stack(env, run)  # what `driftline up` does
    found = find_run_dir(env, elsewhere)
    assert found.path == run.resolve() and "started last" in found.how
    assert find_run_dir({**env, "DRIFTLINE_RUN_DIR": "/x"}, elsewhere).path == Path("/x")  # explicit wins
    forget_stack(env, run)  # `driftline down`
    assert find_run_dir(env, elsewhere).path == elsewhere.resolve() / ".driftline" / "run"
