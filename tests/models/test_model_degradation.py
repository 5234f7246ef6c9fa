"""Graceful degradation of the scorer: circuit breaker, fallback to the previous version, schema drift."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models.breaker import CircuitBreaker
from models.registry import Registry
from models.scorer import Scorer, ScoringRow

NAMES = ("a", "b")


class Broken:
    """An estimator that fails like a real one can: raises, or returns NaN."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.mode == "raise":
            raise ValueError("boom")
        return np.full((len(X), 2), np.nan)


def fitted() -> LogisticRegression:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


def registry_with(tmp_path: Path, champion: object) -> Registry:
    reg = Registry(tmp_path)
    v1 = reg.register("m", fitted(), feature_names=NAMES, reference={"mean_score": 0.3})
    reg.promote("m", v1.version)
    v2 = reg.register("m", champion, feature_names=NAMES, reference={"mean_score": 0.4})
    reg.promote("m", v2.version)
    return reg


def rows(n: int, **extra: float) -> list[ScoringRow]:
    return [ScoringRow(f"t-0-{i}", f"e{i}", i, {"a": 0.5, "b": -0.1, **extra}) for i in range(n)]


@pytest.mark.parametrize("mode", ["raise", "nan"])
def test_failing_champion_falls_back_to_previous_version_and_opens_breaker(tmp_path: Path, mode: str) -> None:
    now = [0.0]
    scorer = Scorer(registry_with(tmp_path, Broken(mode)), "m",
                    breaker_factory=lambda: CircuitBreaker(error_rate=0.5, window=4, min_calls=2, open_s=5,
                                                           clock=lambda: now[0]))
    scorer.start()
    first = scorer.score(rows(10))
    assert {(p.model_version, p.variant) for p in first.predictions} == {(1, "fallback")}
    assert all(math.isfinite(p.score) for p in first.predictions)
    second = scorer.score(rows(10))
    assert [e.kind for e in second.events] == ["breaker_open"]
    assert scorer.breakers[2].state == "open"
    third = scorer.score(rows(10))  # open: the champion is not even called, fallback serves
    assert {p.variant for p in third.predictions} == {"fallback"} and not third.events


def test_half_open_probe_restores_the_champion(tmp_path: Path) -> None:
    now = [0.0]
    broken = Broken("raise")
    reg = registry_with(tmp_path, broken)
    scorer = Scorer(reg, "m", breaker_factory=lambda: CircuitBreaker(error_rate=0.5, window=4, min_calls=2,
                                                                     open_s=5, clock=lambda: now[0]))
    scorer.start()
    scorer.score(rows(4))
    scorer.score(rows(4))
    assert scorer.breakers[2].state == "open"
    scorer.active.champion.estimator.mode = "ok-now"  # the transient fault is gone
    scorer.active.champion.estimator.predict_proba = lambda X: np.tile([0.2, 0.8], (len(X), 1))
    now[0] = 6.0
    result = scorer.score(rows(4))
    assert [e.kind for e in result.events] == ["breaker_closed"]
    assert {(p.model_version, p.variant) for p in result.predictions} == {(2, "champion")}


def test_schema_mismatch_is_not_scored_by_that_version_and_raises_an_event(tmp_path: Path) -> None:
    scorer = Scorer(registry_with(tmp_path, fitted()), "m")
    scorer.start()
    bad = [ScoringRow("t-0-9", "e9", 9, {"a": 0.5})]  # "b" missing
    result = scorer.score(rows(3) + bad)
    assert [(e.kind, e.version, e.rows) for e in result.events] == [("schema_drift", 2, 1)]
    served = {p.prediction_id: (p.model_version, p.variant) for p in result.predictions}
    assert served["t-0-9-fallback"] == (0, "fallback")  # v1 needs "b" too: the prior serves
    assert all(v == (2, "champion") for k, v in served.items() if k != "t-0-9-fallback")
    prior = next(p for p in result.predictions if p.variant == "fallback")
    assert prior.score == pytest.approx(0.4)
