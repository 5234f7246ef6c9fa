"""Scorer and LoadedModel on a real registry in tmp_path with tiny models (control commands: tests/streams/test_control_agent.py)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models.exceptions import IntegrityError, ModelError, RegistryError
from models.loaded import LoadedModel
from models.registry import Registry
from models.routing import route
from models.scorer import Scorer, ScoringRow

MODEL = "risk"
CALLS: list[tuple[str, int]] = []  # (model tag, rows) per predict_proba call, across unpickled copies


class TaggedModel:
    """A picklable probabilistic classifier whose score is sigmoid(w * first column); logs every call."""

    def __init__(self, tag: str, w: float) -> None:
        self.tag, self.w = tag, w

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        CALLS.append((self.tag, len(X)))
        p = 1.0 / (1.0 + np.exp(-self.w * X[:, 0]))
        return np.column_stack([1.0 - p, p])


class BrokenModel:
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise RuntimeError("kaboom")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "registry")
    reg.register(MODEL, TaggedModel("v1", 1.0), feature_names=["a", "b"])
    reg.register(MODEL, TaggedModel("v2", -1.0), feature_names=["a", "b"])
    reg.register(MODEL, TaggedModel("v3", 2.0), feature_names=["a", "b", "c"])
    reg.promote(MODEL, 1, by="test")
    return reg


@pytest.fixture
def scorer(registry: Registry) -> Scorer:
    s = Scorer(registry, MODEL, clock=lambda: 1_700_000_000.0)
    s.start()
    return s


def rows(n: int, *, prefix: str = "e", features: dict[str, Any] | None = None) -> list[ScoringRow]:
    return [ScoringRow(f"vitals-0-{i}", f"{prefix}{i}", 1_000 + i,
                       dict(features) if features is not None else {"a": float(i % 7) - 3.0, "b": 1.0})
            for i in range(n)]


# ------------------------------------------------------------------------------------------ start / score
def test_start_without_production_fails_loudly(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r")
    reg.register(MODEL, TaggedModel("v1", 1.0), feature_names=["a"])
    s = Scorer(reg, MODEL)
    with pytest.raises(ModelError, match="not started"):
        _ = s.active
    assert s.active_version is None
    with pytest.raises(RegistryError, match="no production version"):
        s.start()


def test_scores_with_the_production_version(scorer: Scorer) -> None:
    res = scorer.score(rows(10))
    assert scorer.active_version == 1
    assert len(res.predictions) == 10 and res.schema_mismatches == []
    assert CALLS == [("v1", 10)]
    for p, r in zip(res.predictions, rows(10), strict=True):
        assert (p.model, p.model_version, p.variant, p.entity_id, p.event_ts) == (MODEL, 1, "champion",
                                                                                   r.entity_id, r.event_ts)
        assert p.score == pytest.approx(1 / (1 + math.exp(-r.features["a"])))
        assert p.label == int(p.score >= 0.5)
        assert p.scored_at == 1_700_000_000_000
        assert p.features == r.features


def test_include_features_false_and_threshold(registry: Registry) -> None:
    s = Scorer(registry, MODEL, threshold=0.9, include_features=False)
    s.start()
    preds = s.score(rows(10)).predictions
    assert all(p.features is None for p in preds)
    assert [p.label for p in preds] == [int(p.score >= 0.9) for p in preds]


def test_one_predict_call_per_version_per_batch_with_canary_and_shadow(scorer: Scorer) -> None:
    scorer.set_traffic(2, 50.0, shadow=True)
    batch = rows(400)
    res = scorer.score(batch)
    per_version = Counter(tag for tag, _ in CALLS)
    assert per_version == {"v1": 1, "v2": 1}, CALLS
    variants = Counter(p.variant for p in res.predictions)
    # every champion-served event is shadow-scored by the challenger
    assert variants["champion"] == variants["shadow"] > 0 and variants["challenger"] > 0
    assert variants["champion"] + variants["challenger"] == 400


def test_routing_follows_route_for_every_row(scorer: Scorer) -> None:
    active = scorer.set_traffic(2, 30.0, shadow=True)
    res = scorer.score(rows(300))
    got: dict[str, set[tuple[int, str]]] = {}
    for p in res.predictions:
        got.setdefault(p.entity_id, set()).add((p.model_version, p.variant))
    for r in rows(300):
        assert got[r.entity_id] == {(a.version, a.variant) for a in route(r.entity_id, active.split)}


def test_canary_extremes(scorer: Scorer) -> None:
    scorer.set_traffic(2, 100.0, shadow=False)
    assert {(p.model_version, p.variant) for p in scorer.score(rows(50)).predictions} == {(2, "challenger")}
    scorer.set_traffic(2, 0.0, shadow=False)
    assert {(p.model_version, p.variant) for p in scorer.score(rows(50)).predictions} == {(1, "champion")}


def test_shadow_predictions_score_with_the_challenger(scorer: Scorer) -> None:
    scorer.set_traffic(2, 0.0, shadow=True)
    res = scorer.score(rows(5))
    by_id = {p.prediction_id: p for p in res.predictions}
    for r in rows(5):
        champ, shadow = by_id[f"{r.event_key}-champion"], by_id[f"{r.event_key}-shadow"]
        assert (champ.model_version, shadow.model_version) == (1, 2)
        assert shadow.score == pytest.approx(1 - champ.score)  # v2 has the opposite weight


def test_set_traffic_without_challenger_clears_canary_and_shadow(scorer: Scorer) -> None:
    scorer.set_traffic(2, 50.0, shadow=True)
    active = scorer.set_traffic(None, 50.0, shadow=True)
    assert active.challenger is None and active.split.canary_pct == 0.0 and active.split.shadow is False
    assert {p.variant for p in scorer.score(rows(20)).predictions} == {"champion"}


def test_empty_batch(scorer: Scorer) -> None:
    res = scorer.score([])
    assert res.predictions == [] and res.schema_mismatches == [] and CALLS == []


# ------------------------------------------------------------------------------------------ schema
@pytest.mark.parametrize("features,why", [
    ({"a": 1.0}, "missing features ['b']"),
    ({"a": 1.0, "b": "x"}, "non-numeric features ['b']"),
    ({"a": True, "b": 1.0}, "non-numeric features ['a']"),
    ({"a": None, "b": 1.0}, "non-numeric features ['a']"),
])
def test_schema_mismatch_rows_are_not_scored(scorer: Scorer, features: dict[str, Any], why: str) -> None:
    bad = ScoringRow("vitals-0-999", "bad", 5, features)
    good = rows(3)
    res = scorer.score([good[0], bad, *good[1:]])
    served = [p for p in res.predictions if p.variant == "champion"]
    assert [p.entity_id for p in served] == [r.entity_id for r in good]
    assert res.schema_mismatches == [(bad, 1, why)]
    assert CALLS == [("v1", 3)]  # the bad row never reached the model
    # ... it is served by the degraded path instead (no previous version here: the training prior)
    (fb,) = [p for p in res.predictions if p.entity_id == "bad"]
    assert (fb.variant, fb.model_version, fb.prediction_id) == ("fallback", 0, "vitals-0-999-fallback")
    assert [(e.kind, e.version, e.rows) for e in res.events] == [("schema_drift", 1, 1)]


def test_schema_mismatch_only_for_the_version_that_needs_more(scorer: Scorer) -> None:
    scorer.set_traffic(3, 0.0, shadow=True)  # v3 also needs feature "c"
    res = scorer.score(rows(4))
    assert Counter(p.variant for p in res.predictions) == {"champion": 4}  # shadow misfits are dropped
    assert [(v, why) for _, v, why in res.schema_mismatches] == [(3, "missing features ['c']")] * 4
    assert CALLS == [("v1", 4)]


def test_all_rows_mismatching_skips_the_model_call(scorer: Scorer) -> None:
    res = scorer.score(rows(3, features={"z": 1.0}))
    assert {p.variant for p in res.predictions} == {"fallback"} and len(res.schema_mismatches) == 3
    assert CALLS == []


def test_extra_features_are_ignored_and_order_follows_the_version(registry: Registry) -> None:
    m = LoadedModel.load(registry, MODEL, 3)
    assert m.feature_names == ("a", "b", "c")
    assert m.schema_mismatch({"c": 3.0, "b": 2, "a": 1.0, "extra": "x"}) is None
    assert m.matrix([{"c": 3.0, "b": 2, "a": 1.0}]).tolist() == [[1.0, 2.0, 3.0]]
    assert m.matrix([]).shape == (0, 3)


def test_nan_score_has_no_label(registry: Registry) -> None:
    registry.register(MODEL, TaggedModel("v4", 1.0), feature_names=["a", "b"])
    registry.promote(MODEL, 4)
    s = Scorer(registry, MODEL)
    s.start()
    (p,) = s.score(rows(1, features={"a": float("nan"), "b": 1.0})).predictions
    assert p.variant == "fallback" and math.isnan(p.score) and p.label is None


def test_model_failure_does_not_escape_the_scorer(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r")
    reg.register(MODEL, BrokenModel(), feature_names=["a", "b"], reference={"mean_score": 0.25})
    reg.promote(MODEL, 1)
    s = Scorer(reg, MODEL)
    s.start()
    res = s.score(rows(2))
    assert [(p.variant, p.score, p.label) for p in res.predictions] == [("fallback", 0.25, 0)] * 2


def test_real_sklearn_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    est = LogisticRegression().fit(X, y)
    reg = Registry(tmp_path / "r")
    reg.register(MODEL, est, feature_names=["a", "b"])
    reg.promote(MODEL, 1)
    s = Scorer(reg, MODEL)
    s.start()
    batch = [ScoringRow(f"t-0-{i}", f"e{i}", i, {"b": float(x[1]), "a": float(x[0])}) for i, x in enumerate(X[:20])]
    scores = [p.score for p in s.score(batch).predictions]
    assert scores == pytest.approx(est.predict_proba(X[:20])[:, 1].tolist())


# ------------------------------------------------------------------------------------------ swap
def test_swap_to_serves_the_new_version_and_drops_the_challenger(scorer: Scorer) -> None:
    scorer.set_traffic(2, 50.0, shadow=True)
    active = scorer.swap_to(2)
    assert scorer.active_version == 2 and active.challenger is None
    assert {(p.model_version, p.variant) for p in scorer.score(rows(30)).predictions} == {(2, "champion")}


def test_swap_to_unknown_version_raises_and_keeps_serving(scorer: Scorer) -> None:
    before = scorer.active
    with pytest.raises(RegistryError):
        scorer.swap_to(42)
    assert scorer.active is before and scorer.active_version == 1
    assert {p.model_version for p in scorer.score(rows(3)).predictions} == {1}


def test_swap_to_tampered_artifact_raises_and_keeps_serving(scorer: Scorer, registry: Registry) -> None:
    path = registry.artifact_path(MODEL, 2)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError):
        scorer.swap_to(2)
    assert scorer.active_version == 1


# ------------------------------------------------------------------------------------------ prediction ids
def test_prediction_ids_are_stable_across_replays_swaps_and_instances(scorer: Scorer, registry: Registry) -> None:
    first = [p.prediction_id for p in scorer.score(rows(20)).predictions]
    assert first == [f"vitals-0-{i}-champion" for i in range(20)]
    assert [p.prediction_id for p in scorer.score(rows(20)).predictions] == first
    other = Scorer(registry, MODEL, clock=lambda: 0.0)
    other.start()
    assert [p.prediction_id for p in other.score(rows(20)).predictions] == first
    scorer.swap_to(2)
    assert [p.prediction_id for p in scorer.score(rows(20)).predictions] == first  # same event, same variant
    assert len(set(first)) == 20
