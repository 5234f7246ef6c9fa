"""Shared checks for the deploy/ files: the series names and labels streams.metrics exports, and promtool."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCRAPE_LABELS = frozenset({"job", "instance", "service", "le", "quantile"})
_NAME = re.compile(r"\bdriftline_[a-zA-Z0-9_]+")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "gauge": ("",), "summary": ("_sum", "_count", "_created")}


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a driftline worker can expose (counters with ``_total``, histograms with
    ``_bucket/_sum/_count``), mapped to its label names."""
    out: dict[str, frozenset[str]] = {}
    for collector in Metrics().registry._collector_to_names:  # noqa: SLF001 - labels of unobserved series too
        labels = frozenset(getattr(collector, "_labelnames", ()))
        for family in collector.describe():
            for suffix in _SUFFIXES[family.type]:
                out[family.name + suffix] = labels
    return out


def unknown_names(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """The ``driftline_*`` names in a PromQL expression that no driftline worker exports."""
    return [n for n in _NAME.findall(expr) if n not in known]


def unknown_labels(expr: str, known: dict[str, frozenset[str]]) -> set[str]:
    """Label names used in ``by/on/ignoring (...)`` clauses and ``{...}`` matchers that none of the
    expression's driftline series carries (scrape labels such as job/instance are always allowed)."""
    allowed = set(SCRAPE_LABELS)
    for name in _NAME.findall(expr):
        allowed |= known.get(name, frozenset())
    used: set[str] = set()
    for group in re.findall(r"\b(?:by|on|ignoring|without)\s*\(([^)]*)\)", expr):
        used |= {g.strip() for g in group.split(",") if g.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        used |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return used - allowed


@pytest.fixture(scope="session")
def known() -> dict[str, frozenset[str]]:
    return exported_series()


def find_promtool() -> str | None:
    """Path of promtool; a missing promtool fails the test in CI (CI=true) and skips it elsewhere."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is missing in CI: .ci/run installs it (apt-get install prometheus)")
        pytest.skip("promtool not installed (Debian package `prometheus`: apt-get install prometheus)")
    return path


@pytest.fixture()
def promtool() -> str:
    path = find_promtool()
    assert path is not None
    return path


def load_yaml(path: Path) -> Any:
    """Parse a YAML file with PyYAML: a missing PyYAML fails in CI (the Makefile installs it), skips elsewhere."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PyYAML is missing in CI: `make test` installs it")
        pytest.skip("PyYAML is needed to read the deploy YAML files (pip install pyyaml)")
    return yaml.safe_load(path.read_text())
