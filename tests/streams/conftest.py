"""Fixtures of the pipeline tests (helpers live in ``pipeline_fakes``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from features.store import MemoryFeatureStore
from models.registry import Registry
from streams.runtime.pipeline import FusedHandler

from .pipeline_fakes import VIEW, make_handler


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(80, 10, 300), rng.integers(1, 6, 300)])
    est = LogisticRegression().fit(X, (X[:, 0] > 80).astype(int))
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.register("risk", est, feature_names=list(VIEW.feature_names))
    reg.promote("risk", 1)
    return reg


@pytest.fixture
def store() -> MemoryFeatureStore:
    return MemoryFeatureStore()


@pytest.fixture
def handler(registry: Registry, store: MemoryFeatureStore) -> FusedHandler:
    return make_handler(registry, store)
