"""``PredictionColumns``: the columns give the predictions the per-row scorer built (score written as NaN when not
finite, label None only for a NaN score) and the wire bytes of ``encode_predictions`` / ``codec.encode``."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from models.prediction import Prediction, encode_predictions
from models.prediction_columns import PredictionColumns
from streams import codec

_text = st.text(max_size=12)  # quotes, backslashes, control and non-ASCII characters
_score = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.5, -0.0, 0.0, 1.0])
_features = st.dictionaries(_text, st.floats(allow_nan=True, allow_infinity=True), max_size=5)


@st.composite
def groups(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(0, 6))
    rows = [(draw(_text), draw(_text), draw(st.integers(-2**63, 2**63 - 1)), draw(_features)) for _ in range(n)]
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    with np.errstate(over="ignore"):  # a float past float32's range becomes inf, as a float32 model gives it
        raw = np.array([draw(_score) for _ in range(n)], dtype=np.float64).astype(dtype)
    keep = draw(st.booleans())
    mapping = draw(st.booleans())  # feature maps that are not dicts: copied, as encode_predictions copies them
    quality = draw(st.none() | st.lists(st.none() | st.dictionaries(_text, st.sampled_from(["stuck", "spike"]),
                                                                    min_size=1, max_size=2), min_size=n, max_size=n))
    return rows, raw, keep, mapping, quality, draw(st.sampled_from(["champion", "shadow", "fallback"])), draw(
        st.sampled_from([0.5, 0.0, 1.0, 0.25]))


@given(groups())
def test_the_columns_give_the_per_row_predictions_and_their_bytes(group: tuple) -> None:
    rows, raw, keep, mapping, quality, variant, threshold = group
    feats = [MappingProxyType(f) if mapping else f for _, _, _, f in rows]
    cols = PredictionColumns.of([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                feats if keep else None, raw, model="m", version=3, variant=variant,
                                scored_at=99, threshold=threshold)
    cols.quality = quality
    expected = []
    for (key, entity, ts, f), q, score in zip(rows, quality or [None] * len(rows), raw.tolist(), strict=True):
        # what Scorer._emit built per row before the columns
        expected.append(Prediction(key + f"-{variant}", entity, ts, "m", 3, variant,
                                   float(score) if math.isfinite(score) else math.nan,
                                   None if score != score else int(score >= threshold), 99,
                                   (dict(f) if mapping else f) if keep else None, q))
    got = cols.predictions()
    assert [p.to_dict() for p in got] == [p.to_dict() for p in expected] or _same_with_nan(got, expected)
    assert cols.encode() == encode_predictions(expected) == [codec.encode(p.to_dict()) for p in expected]
    assert len(cols) == len(rows)


def _same_with_nan(got: list[Prediction], expected: list[Prediction]) -> bool:
    """Equal field by field, NaN equal to NaN (dict equality says NaN != NaN)."""
    return [codec.encode(p.to_dict()) for p in got] == [codec.encode(p.to_dict()) for p in expected] and all(
        type(a.label) is type(b.label) for a, b in zip(got, expected, strict=True))
