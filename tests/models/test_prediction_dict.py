"""The hand-written ``Prediction.to_dict`` stays equal to ``dataclasses.asdict`` (every field, copied features)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from models.prediction import Prediction

_features = st.none() | st.dictionaries(st.text(min_size=1, max_size=8), st.floats(allow_nan=False), max_size=5)
_quality = st.none() | st.dictionaries(st.text(min_size=1, max_size=8), st.sampled_from(["stuck", "spike"]),
                                       min_size=1, max_size=3)


@given(st.text(max_size=10), st.integers(0, 2**40), st.integers(1, 99), st.floats(0, 1),
       st.none() | st.integers(0, 1), _features, _quality)
def test_to_dict_equals_asdict(entity: str, ts: int, version: int, score: float, label: int | None,
                               features: dict[str, float] | None, quality: dict[str, str] | None) -> None:
    p = Prediction(f"t-0-{ts}-champion", entity, ts, "m", version, "champion", score, label, ts + 5, features,
                   quality)
    d = p.to_dict()
    assert d == dataclasses.asdict(p)
    assert [f.name for f in dataclasses.fields(Prediction)] == list(d)
    assert Prediction.from_dict(d) == p
    if features is not None:
        assert d["features"] is not features  # a copy: mutating the wire dict never changes the prediction
