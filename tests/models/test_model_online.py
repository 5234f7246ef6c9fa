"""Online learning of a river champion: scoring through the scorer, learning on a copy, swap between batches."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
from river import compose, linear_model, preprocessing
from sklearn.linear_model import LogisticRegression

from models.exceptions import ModelError
from models.loaded import LoadedModel
from models.online import LabeledExample, OnlineLearner, install, is_river
from models.registry import Registry
from models.scorer import Scorer, ScoringRow

MODEL = "risk-river"
NAMES = ["hr", "spo2"]
X0 = {"hr": 1.0, "spo2": 0.5}


def river_model() -> compose.Pipeline:
    return compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())


@pytest.fixture
def scorer(tmp_path: Path) -> Scorer:
    reg = Registry(tmp_path)
    m = river_model()
    rng = np.random.default_rng(0)
    for _ in range(50):  # a little warm start, so the scaler has statistics
        x = {"hr": float(rng.normal()), "spo2": float(rng.normal())}
        m.learn_one(x, x["hr"] > 0)
    reg.promote(MODEL, reg.register(MODEL, m, feature_names=NAMES, flavor="river").version)
    s = Scorer(reg, MODEL)
    s.start()
    return s


def score_of(scorer: Scorer, x: dict[str, float] = X0) -> float:
    return scorer.score([ScoringRow("k-0-0", "e1", 1, x)]).predictions[0].score


def examples(n: int, label: int, x: dict[str, float] = X0) -> list[LabeledExample]:
    return [LabeledExample(x, label) for _ in range(n)]


def test_a_registered_river_pipeline_scores_through_the_scorer(scorer: Scorer) -> None:
    p = scorer.score([ScoringRow("k-0-0", "e1", 1, X0), ScoringRow("k-0-1", "e2", 2, {"hr": -2.0, "spo2": 0.0})])
    assert [q.model_version for q in p.predictions] == [1, 1]
    assert p.predictions[0].score > p.predictions[1].score  # learned: higher hr, higher risk
    assert all(0.0 < q.score < 1.0 for q in p.predictions)


def test_learning_happens_on_a_copy_until_installed(scorer: Scorer) -> None:
    champion = scorer.active.champion
    before = score_of(scorer)
    learner = OnlineLearner(champion)
    assert learner.learn(examples(200, 0)) == 200
    assert score_of(scorer) == before                 # not installed yet: served model untouched
    assert champion.estimator.predict_proba_one(X0)[True] == pytest.approx(before)  # registry copy untouched
    install(scorer, learner.publish())
    after = score_of(scorer)
    assert after < before - 0.1                       # moved toward the labels (all 0)
    assert scorer.active_version == 1                 # same version: lineage stays with the parent


def test_published_copies_are_frozen_snapshots(scorer: Scorer) -> None:
    learner = OnlineLearner(scorer.active.champion)
    learner.learn(examples(50, 1))
    first = learner.publish()
    p1 = first.estimator.predict_proba_one(X0)[True]
    learner.learn(examples(200, 0))
    assert first.estimator.predict_proba_one(X0)[True] == p1  # later learning never reaches a served copy
    assert learner.publish().estimator.predict_proba_one(X0)[True] < p1


def test_examples_missing_features_or_not_finite_are_skipped(scorer: Scorer) -> None:
    learner = OnlineLearner(scorer.active.champion)
    bad = [LabeledExample({"hr": 1.0}, 1), LabeledExample({"hr": math.nan, "spo2": 0.0}, 1),
           LabeledExample({"hr": "x", "spo2": 0.0}, 1)]  # type: ignore[dict-item]
    w = copy.deepcopy(learner.working)
    assert learner.learn(bad) == 0
    assert learner.stats.skipped == 3
    assert learner.working.predict_proba_one(X0) == w.predict_proba_one(X0)


def test_checkpoint_every_n_labels(scorer: Scorer) -> None:
    learner = OnlineLearner(scorer.active.champion, checkpoint_every=10)
    learner.learn(examples(9, 1))
    assert not learner.checkpoint_due
    learner.learn(examples(1, 1))
    assert learner.checkpoint_due
    est, tags = learner.checkpoint()
    assert tags == {"origin": "online", "parent": "1", "labels_learned": "10"}
    assert not learner.checkpoint_due and est is not learner.working
    never = OnlineLearner(scorer.active.champion)
    never.learn(examples(500, 1))
    assert not never.checkpoint_due


def test_follows_and_rebase(scorer: Scorer) -> None:
    champion = scorer.active.champion
    learner = OnlineLearner(champion)
    assert learner.follows(champion)
    learner.learn(examples(5, 1))
    install(scorer, learner.publish())
    assert learner.follows(scorer.active.champion)
    other = LoadedModel(champion.meta, river_model())
    assert not learner.follows(other)
    learner.rebase(other)
    assert learner.follows(other) and learner.stats.learned == 0 and learner.stats.rebased == 1


def test_non_river_models_cannot_learn(scorer: Scorer) -> None:
    sk = LoadedModel(scorer.active.champion.meta, LogisticRegression())
    assert not is_river(sk)
    with pytest.raises(ModelError):
        OnlineLearner(sk)
    with pytest.raises(ModelError):
        OnlineLearner(scorer.active.champion, checkpoint_every=-1)


def test_install_refuses_another_version(scorer: Scorer) -> None:
    from dataclasses import replace

    other = LoadedModel(replace(scorer.active.champion.meta, version=7), river_model())
    with pytest.raises(ModelError):
        install(scorer, other)
