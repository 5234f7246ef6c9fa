"""Skips are allowed only from an explicit list; under CI any other skip fails the run.

A skipped test stops testing without a sound: once, 33 Redis tests skipped on every machine without a Redis on
127.0.0.1:6379 and the run still exited 0. So every skip of a run is matched against :data:`ALLOWED`; the
allow-list and what matched it are printed at the end of the run, and under CI (``DRIFTLINE_STRICT_SKIPS=1``,
which ``.ci/run`` sets, or ``CI=true``; ``DRIFTLINE_STRICT_SKIPS=0`` turns it off) a skip that matches no
entry fails the run. Outside CI such a skip is listed as one that would fail there.

To allow a new kind of skip, add an :class:`AllowedSkip` to :data:`ALLOWED`: a marker the skipped tests carry
(preferred: ``@pytest.mark.docker``) or the start of the skip reason, and **why** the test cannot run on a
fresh CI machine. Keep the list short: a dependency CI can install belongs in ``.ci/run`` instead. Expected
failures (``xfail``) are not skips; they are listed apart.

Example:
    >>> rule = AllowedSkip("docker", "no Docker engine on the machine", marker="docker")
    >>> rule.matches({"docker", "test_x"}, "testcontainers needs a Docker engine"), rule.matches(set(), "x")
    (True, False)
    >>> AllowedSkip("cuda", "no GPU", reason_prefix="needs CUDA").matches(set(), "needs CUDA 12")
    True
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import pytest


@dataclass(frozen=True)
class AllowedSkip:
    """One kind of skip that may happen in CI: tests marked ``marker``, or skips whose reason starts with
    ``reason_prefix``; ``why`` says why such a test cannot run on a fresh CI machine (printed with the list)."""

    name: str
    why: str
    marker: str | None = None
    reason_prefix: str | None = None

    def __post_init__(self) -> None:
        if (self.marker is None) == (self.reason_prefix is None):
            raise ValueError(f"allowed skip {self.name!r}: give exactly one of marker and reason_prefix")

    def matches(self, keywords: Collection[str], reason: str) -> bool:
        """True when a skip of a test with these keywords (markers, names) and this reason is allowed."""
        if self.marker is not None:
            return self.marker in keywords
        return reason.startswith(self.reason_prefix or "")


#: Every skip CI accepts. Add entries with care (see the module docstring).
ALLOWED: tuple[AllowedSkip, ...] = (
    AllowedSkip(
        "docker",
        "needs a Docker engine (testcontainers, the image, compose); laptops may have none. CI starts one "
        "(deploy/local-engine.sh) and then requires these tests; they skip there only when it cannot start, "
        "saying why. The same paths run on the embedded tansu + redis-server stack in every run",
        marker="docker",
    ),
)


def strict_from_env(env: Mapping[str, str]) -> bool:
    """Whether a skip outside :data:`ALLOWED` fails the run.

    >>> strict_from_env({}), strict_from_env({"CI": "true"}), strict_from_env({"DRIFTLINE_STRICT_SKIPS": "1"})
    (False, True, True)
    >>> strict_from_env({"CI": "true", "DRIFTLINE_STRICT_SKIPS": "0"})
    False
    """
    flag = env.get("DRIFTLINE_STRICT_SKIPS")
    if flag is not None and flag.strip() != "":
        return flag.strip().lower() not in ("0", "false", "no")
    return env.get("CI", "").strip().lower() == "true"


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


@dataclass(eq=False)  # a plugin must stay hashable
class SkipPolicy:
    """The pytest plugin (registered by ``tests/conftest.py``) that sorts every skip of the run."""

    strict: bool
    allowed: tuple[AllowedSkip, ...] = ALLOWED
    matched: dict[str, list[str]] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    xfailed: list[tuple[str, str]] = field(default_factory=list)

    def _sort(self, nodeid: str, keywords: Collection[str], reason: str) -> None:
        for rule in self.allowed:
            if rule.matches(keywords, reason):
                self.matched.setdefault(rule.name, []).append(nodeid)
                return
        self.refused.append((nodeid, reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.skipped:
            return
        if hasattr(report, "wasxfail"):
            self.xfailed.append((report.nodeid, str(report.wasxfail)))
            return
        self._sort(report.nodeid, set(report.keywords), _reason(report))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # a whole module skipped at import (``pytest.importorskip``, ``allow_module_level``)
            self._sort(report.nodeid, set(), _reason(report))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        tr = terminalreporter
        tr.section("skip policy")
        mode = "strict: a skip not on this list fails the run" if self.strict else (
            "not strict (CI sets DRIFTLINE_STRICT_SKIPS=1): a skip not on this list is only reported")
        tr.write_line(f"allowed skips ({mode}):")
        for rule in self.allowed:
            tr.write_line(f"  {rule.name} [{len(self.matched.get(rule.name, []))} skipped]: {rule.why}")
        if self.xfailed:
            tr.write_line(f"expected failures (xfail, not skips): {len(self.xfailed)}")
            for nodeid, reason in self.xfailed:
                tr.write_line(f"  {nodeid}: {reason}")
        if self.refused:
            verdict = "FAIL" if self.strict else "would fail under CI"
            tr.write_line(f"skips on no allow-list entry ({verdict}): {len(self.refused)}", red=True, bold=True)
            for nodeid, reason in self.refused:
                tr.write_line(f"  {nodeid}: {reason}", red=True)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.strict and self.refused and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def register(config: pytest.Config) -> None:
    """Register the policy once per run (from ``pytest_configure``)."""
    if not config.pluginmanager.has_plugin("driftline-skip-policy"):
        config.pluginmanager.register(SkipPolicy(strict=strict_from_env(os.environ)), "driftline-skip-policy")
