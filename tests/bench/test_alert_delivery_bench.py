"""Smoke test of bench.alert_delivery_bench: one tiny run, output STRUCTURE and correctness only (never timings)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # bench/ is a directory of commands next to the packages, not an installed package
    sys.path.insert(0, ROOT)

from bench import alert_delivery_bench  # noqa: E402
from bench.common import bench_stack  # noqa: E402

pytestmark = pytest.mark.integration


def test_tiny_table(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with bench_stack() as info:
        (table,) = alert_delivery_bench.run(info, alert_delivery_bench.AlertBenchConfig.tiny())
    assert table.bench == "alert_delivery" and table.columns == alert_delivery_bench.COLUMNS
    assert [r[0].split(" ")[0] for r in table.rows] == ["direct", "delivery", "outage", "one"]
    cols = {c: i for i, c in enumerate(table.columns)}
    assert all(r[cols["exactly once, in order"]] is True for r in table.rows)  # the stand-in saw each alert once
    assert table.rows[2][cols["recovery s"]] is not None and table.limit.startswith("limit: ")
