"""data_quality alerts from marked predictions: bounded naming, hysteresis, resolve, quarantine, no rollback."""

from __future__ import annotations

from types import SimpleNamespace as NS

from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.data_quality import DataQualityMonitor, QualityConfig
from monitor.rollback import RollbackPolicy


def preds(n: int, faulty: dict[str, dict[str, str]], entities: int = 50, start: int = 0,
          version: int = 2) -> list[Prediction]:
    """Every other prediction from a healthy entity, the others cycling through the faulty ones."""
    bad = sorted(faulty)
    out = []
    for i in range(start, start + n):
        e = bad[(i // 2) % len(bad)] if bad and i % 2 == 0 else f"e{i % entities}"
        out.append(Prediction(f"p{i}", e, i, "m", version, "champion", 0.5, 0, 0, quality=faulty.get(e)))
    return out


def run(dq: DataQualityMonitor, predictions: list[Prediction], batch: int = 50) -> tuple[list, list[Alert]]:
    clean, alerts = [], []
    for i in range(0, len(predictions), batch):
        c, a = dq.observe(predictions[i:i + batch], now_ms=i)
        clean += c
        alerts += a
    return clean, alerts


def test_many_broken_sensors_give_one_bounded_alert_per_field() -> None:
    faulty = {f"f{i}": {"spo2": "stuck" if i % 2 else "dropout", **({"hr": "spike"} if i < 40 else {})}
              for i in range(1000)}
    dq = DataQualityMonitor(QualityConfig(window=5000, top_k=10))
    clean, alerts = run(dq, preds(4000, faulty))
    triggers = {a.feature: a for a in alerts if a.action == "trigger"}
    assert set(triggers) == {"spo2", "hr"}
    spo2 = triggers["spo2"]
    assert (spo2.kind, spo2.severity, spo2.detector) == ("data_quality", "warning", "sensor_checks")
    assert len(spo2.details["entities"]) == 10 and spo2.details["faulty_entities"] == spo2.value
    assert set(spo2.details["by_fault"]) == {"stuck", "dropout"}
    assert len(spo2.summary) <= 1024 and "(+" in spo2.summary and "no rollback" in spo2.summary
    assert all(not p.quality for p in clean) and dq.quarantined == 2000


def test_it_resolves_once_the_faulty_entities_are_gone() -> None:
    dq = DataQualityMonitor(QualityConfig(window=500, resolve_after=3))
    _, first = run(dq, preds(1000, {f"f{i}": {"spo2": "stuck"} for i in range(5)}))
    _, later = run(dq, preds(3000, {}, start=1000))
    assert [a.action for a in first] == ["trigger"]
    assert [a.action for a in later] == ["resolve"] and later[0].dedup_key == first[0].dedup_key


def test_a_few_entities_do_not_alert_and_a_growing_count_updates_the_open_alert() -> None:
    dq = DataQualityMonitor(QualityConfig(min_entities=3, window=10_000))
    _, alerts = run(dq, preds(1000, {f"f{i}": {"hr": "spike"} for i in range(2)}))
    assert alerts == []
    _, alerts = run(dq, preds(2000, {f"f{i}": {"hr": "spike"} for i in range(4)}, start=1000))
    assert [a.action for a in alerts] == ["trigger"]
    _, more = run(dq, preds(2000, {f"f{i}": {"hr": "spike"} for i in range(20)}, start=3000))
    assert more and all(a.action == "trigger" and a.details["update"] for a in more)
    assert more[0].dedup_key == alerts[0].dedup_key and "no new page" in more[0].summary


def test_without_quarantine_marked_predictions_stay_in_the_drift_statistics() -> None:
    dq = DataQualityMonitor(QualityConfig(quarantine=False))
    clean, _ = run(dq, preds(400, {"f0": {"hr": "spike"}}))
    assert len(clean) == 400 and dq.quarantined == 0


def test_a_data_quality_alert_never_rolls_back() -> None:
    class Reg:
        def production(self, model: str) -> NS:
            return NS(version=2)

        def rollback_target(self, model: str, exclude: object = ()) -> NS:
            return NS(version=1)

    alert = Alert.build(action="trigger", severity="critical", kind="data_quality", model="m", model_version=2,
                        feature="spo2", detector="sensor_checks", statistic="faulty_entities", value=40.0,
                        threshold=3.0, window="w", ts=0, summary="s")
    assert RollbackPolicy(Reg(), mode="rollback").on_alert(alert, 0) is None
