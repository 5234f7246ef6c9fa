"""The scorer's batch path equals the per-row path it replaces: the same matrix bits, the same predictions and
the same wire bytes (``encode_predictions`` vs ``codec.encode(p.to_dict())``)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.loaded import LoadedModel
from models.prediction import Prediction, encode_predictions
from models.registry import Registry
from models.scorer import Scorer, ScoringRow, ScoringRows
from streams import codec

NAMES = ("a", "b", "c")
MODEL = "risk"


class Linear:
    """A picklable classifier: sigmoid(w · row), NaN in → NaN out (so the breaker and fallback paths run too)."""

    def __init__(self, w: tuple[float, ...]) -> None:
        self.w = np.asarray(w)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            p = 1.0 / (1.0 + np.exp(-(X @ self.w)))
        return np.column_stack([1.0 - p, p])


_value = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5) | st.booleans()
          | st.floats(-1e3, 1e3).map(np.float64) | st.just("x"))
_fitting = st.fixed_dictionaries({n: st.floats(-1e6, 1e6) for n in NAMES})
_nearly = st.fixed_dictionaries({n: st.floats(-1e6, 1e6) | _value for n in NAMES})  # every name, not all floats
_vector = (_fitting | _nearly | st.dictionaries(st.sampled_from(NAMES + ("zz",)), _value, max_size=4))


def _model(compiled: bool) -> LoadedModel:
    m = LoadedModel(SimpleNamespace(feature_names=NAMES), None)
    if compiled and not m._compiled:
        pytest.skip("models._matrix was not built (pip install -e . needs a C compiler)")
    m.__dict__["_compiled"] = compiled  # the cached property, set: this path and no other
    return m


_mappings = st.sampled_from([dict, MappingProxyType, OrderedDict])  # C reads exact dicts only: Python decides


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "c"])
@given(vectors=st.lists(st.tuples(_vector, _mappings), max_size=8), as_tuple=st.booleans())
def test_fit_matrix_is_none_or_the_same_bits_as_matrix(compiled: bool, vectors: list[tuple[dict[str, Any], Any]],
                                                        as_tuple: bool) -> None:
    m = _model(compiled)
    rows = [kind(v) for v, kind in vectors]
    X = m.fit_matrix(tuple(rows) if as_tuple else rows)
    every_float = bool(rows) and all(all(type(v.get(n)) is float for n in NAMES) for v in rows)
    assert (X is not None) == every_float
    if X is not None:
        assert X.tobytes() == m.matrix(rows).tobytes() and X.shape == (len(rows), len(NAMES))
        assert X.dtype == np.float64 and X.flags.writeable and X.flags.c_contiguous
        assert all(m.schema_mismatch(v) is None for v in rows)


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "c"])
@given(rows=st.lists(_fitting, max_size=3), odd=_nearly, at=st.integers(0, 3))
def test_fit_matrix_refuses_a_batch_with_one_value_not_a_float(compiled: bool, rows: list[dict[str, Any]],
                                                               odd: dict[str, Any], at: int) -> None:
    """Among dicts of floats, one vector holding an int, a bool, a string or a float subclass (numpy's float64)
    anywhere: no matrix (the rows are checked one by one)."""
    m = _model(compiled)
    rows.insert(min(at, len(rows)), odd)
    X = m.fit_matrix(rows)
    assert (X is None) == any(type(v) is not float for v in odd.values())
    if X is not None:
        assert X.tobytes() == m.matrix(rows).tobytes()


def test_fit_matrix_compiled_serves_the_engines_vectors() -> None:
    """The C path does serve the engine's vectors (dicts of floats), not only fall back to Python."""
    from models import loaded

    m = _model(True)
    vectors = [{"a": 1.0, "b": -0.0, "c": float("nan")}, {"c": 3.0, "b": 2.0, "a": 1e308}]
    assert loaded._compiled_matrix(vectors, NAMES) is not None
    X = m.fit_matrix(vectors)
    assert X.tobytes() == np.array([[1.0, -0.0, np.nan], [1e308, 2.0, 3.0]]).tobytes()


def test_fit_matrix_leaves_one_feature_models_to_the_row_path() -> None:
    m = LoadedModel(SimpleNamespace(feature_names=("a",)), None)
    assert m.fit_matrix([{"a": 1.0}]) is None and m.matrix([{"a": 1.0}]).tolist() == [[1.0]]


_text = st.text(max_size=12)  # quotes, backslashes, control and non-ASCII characters
_floats = st.floats(allow_nan=True, allow_infinity=True)
_prediction = st.builds(
    Prediction, _text, _text, st.integers(-2**63, 2**63 - 1), _text, st.integers(0, 99),
    st.sampled_from(["champion", "challenger", "shadow", "fallback"]), _floats, st.none() | st.integers(0, 1),
    st.integers(0, 2**62), st.none() | st.dictionaries(_text, _floats, max_size=6),
    st.none() | st.dictionaries(_text, st.sampled_from(["stuck", "dropout", "spike"]), max_size=3))


@given(st.lists(_prediction, max_size=6))
def test_encode_predictions_gives_the_bytes_of_to_dict_and_codec(predictions: list[Prediction]) -> None:
    assert encode_predictions(predictions) == [codec.encode(p.to_dict()) for p in predictions]


def test_encode_predictions_copies_a_mapping_that_is_not_a_dict() -> None:
    from types import MappingProxyType
    p = Prediction("p", "e", 0, "m", 1, "champion", 0.5, 1, 0, MappingProxyType({"a": 1.0}))  # type: ignore[arg-type]
    assert encode_predictions([p]) == [codec.encode(p.to_dict())]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    reg = Registry(Path(tmp_path_factory.mktemp("batch")) / "registry")
    reg.register(MODEL, Linear((0.5, -1.0, 0.25)), feature_names=list(NAMES), reference={"mean_score": 0.3})
    reg.register(MODEL, Linear((1.0, 1.0, -2.0)), feature_names=list(NAMES))
    reg.promote(MODEL, 1, by="test")
    return reg


_row = st.builds(lambda i, e, v: ScoringRow(f"t-0-{i}", f"e{e}", 1000 + i, v),
                 st.integers(0, 10**6), st.integers(0, 30), _vector)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_row, max_size=12), challenger=st.booleans(), canary=st.sampled_from([0.0, 50.0, 100.0]),
       shadow=st.booleans())
def test_scorer_batch_path_equals_the_row_path(registry: Registry, rows: list[ScoringRow], challenger: bool,
                                               canary: float, shadow: bool) -> None:
    def scorer() -> Scorer:
        s = Scorer(registry, MODEL, clock=lambda: 1_700_000_000.0)
        s.start(version=1)
        if challenger:
            s.set_traffic(2, canary, shadow)
        return s

    batch = scorer().score(rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LoadedModel, "fit_matrix", lambda self, vectors: None)  # the per-row path of before
        reference = scorer().score(rows)
    assert encode_predictions(batch.predictions) == [codec.encode(p.to_dict()) for p in reference.predictions]
    scores = [np.float64([p.score for p in r.predictions]).tobytes() for r in (batch, reference)]
    assert scores[0] == scores[1]  # the same doubles, NaN included
    assert batch.schema_mismatches == reference.schema_mismatches
    assert batch.events == reference.events
    columns = ScoringRows()  # the pipeline's rows: columns, ScoringRow objects only when indexed
    for r in rows:
        columns.append(r.event_key, r.entity_id, r.event_ts, r.features)
    by_columns = scorer().score(columns)
    assert encode_predictions(by_columns.predictions) == encode_predictions(batch.predictions)
    assert (by_columns.schema_mismatches, by_columns.events) == (batch.schema_mismatches, batch.events)
