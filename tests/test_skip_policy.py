"""The skip policy in a real pytest run: under CI a skip off the allow-list fails the run, and the list is printed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = """
from tests import skip_policy

def pytest_configure(config):
    skip_policy.register(config)
"""


def run(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    docker: needs Docker\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "DRIFTLINE_STRICT_SKIPS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env={**clean, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120)


MIXED = """
    import pytest

    def test_runs():
        assert True

    @pytest.mark.docker
    def test_container():
        pytest.skip("testcontainers needs a Docker engine: none here")

    def test_needs_redis():
        pytest.skip("no Redis at 127.0.0.1:6379")

    @pytest.mark.xfail(strict=True, reason="issue 16 fixes it")
    def test_known_bug():
        assert False
"""


def test_a_skip_off_the_allow_list_fails_the_run_under_ci(tmp_path: Path) -> None:
    out = run(tmp_path, MIXED, DRIFTLINE_STRICT_SKIPS="1")
    assert out.returncode == 1, out.stdout
    assert "skip policy" in out.stdout and "strict" in out.stdout
    assert "docker [1 skipped]" in out.stdout  # the allow-list is printed, with what it let through
    assert "skips on no allow-list entry (FAIL): 1" in out.stdout
    assert "test_needs_redis: no Redis at 127.0.0.1:6379" in out.stdout
    assert "test_known_bug: issue 16 fixes it" in out.stdout  # xfails are listed apart, not failed


@pytest.mark.parametrize("env", [{"CI": "true"}, {"DRIFTLINE_STRICT_SKIPS": "yes"}])
def test_ci_true_is_strict_too(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(tmp_path, MIXED, **env).returncode == 1


def test_outside_ci_the_same_skip_is_reported_and_the_run_passes(tmp_path: Path) -> None:
    out = run(tmp_path, MIXED)
    assert out.returncode == 0, out.stdout
    assert "skips on no allow-list entry (would fail under CI): 1" in out.stdout


def test_allowed_skips_only_pass_under_ci(tmp_path: Path) -> None:
    body = """
        import pytest

        @pytest.mark.docker
        def test_container():
            pytest.skip("no engine")

        def test_runs():
            assert True
    """
    out = run(tmp_path, body, DRIFTLINE_STRICT_SKIPS="1")
    assert out.returncode == 0, out.stdout
    assert "docker [1 skipped]" in out.stdout and "no allow-list entry" not in out.stdout


def test_a_module_skipped_at_import_counts(tmp_path: Path) -> None:
    body = """
        import pytest
        pytest.importorskip("no_such_module_anywhere", reason="optional extra missing")

        def test_never():
            pass
    """
    out = run(tmp_path, body, DRIFTLINE_STRICT_SKIPS="1")
    assert out.returncode == 1, out.stdout
    assert "optional extra missing" in out.stdout


def test_a_failing_run_keeps_its_own_exit_code(tmp_path: Path) -> None:
    out = run(tmp_path, "def test_fails():\n    assert False\n", DRIFTLINE_STRICT_SKIPS="1")
    assert out.returncode == 1 and "1 failed" in out.stdout
