"""The latest-vector value format (features.latest): bytes, round trip, NaN/missing, order, bulk decode."""

from __future__ import annotations

import math
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.exceptions import FeatureError
from features.latest import LatestCodec, LatestVectors, codec_for
from features.silence import SilenceTracker
from features.views import VITALS_VIEW

NAMES = ("a", "b", "c")
T0 = 1_700_000_000_000


def same(x: float, y: float) -> bool:
    """Equal as stored floats (NaN equals NaN, -0.0 differs from 0.0)."""
    return struct.pack("<d", x) == struct.pack("<d", y) or (math.isnan(x) and math.isnan(y))


def test_value_bytes_are_pinned() -> None:
    raw = LatestCodec(("x", "y")).encode(T0, {"y": 2.0, "x": -1.5})
    assert raw == b"DLv\x01" + struct.pack("<I", 2) + struct.pack("<q", T0) + struct.pack("<2d", -1.5, 2.0)
    assert len(codec_for(VITALS_VIEW.feature_names).encode(T0, {})) == 16 + 8 * len(VITALS_VIEW.feature_names)


def test_round_trip_keeps_exact_floats_and_view_order() -> None:
    codec = LatestCodec(NAMES)
    vec = {"c": -0.0, "a": 1e-300, "b": math.inf}  # insertion order differs from the view's
    as_of, got = codec.decode(codec.encode(T0, vec))
    assert as_of == T0 and list(got) == list(NAMES)
    assert all(same(got[k], vec[k]) for k in NAMES)
    m = codec.matrix(["e"], [codec.encode(T0, vec)])
    assert [same(x, vec[k]) for x, k in zip(m.values[0].tolist(), NAMES, strict=True)] == [True] * 3


def test_missing_features_and_nan_read_as_nan_unknown_ones_are_refused() -> None:
    codec = LatestCodec(NAMES)
    _, got = codec.decode(codec.encode(T0, {"b": math.nan}))
    assert all(math.isnan(v) for v in got.values())
    with pytest.raises(FeatureError, match=r"\['zz'\]"):
        codec.encode(T0, {"a": 1.0, "zz": 2.0})


def test_matrix_rows_follow_the_request_and_absent_entities_are_marked() -> None:
    codec = LatestCodec(NAMES)
    raws = [None, codec.encode(T0 + 1, {"a": 1.0}), None, codec.encode(T0 + 3, {"c": 3.0})]
    m = codec.matrix(["w", "x", "y", "z"], raws)
    assert m.ids == ["w", "x", "y", "z"] and m.feature_names == NAMES
    assert m.found.tolist() == [False, True, False, True]
    assert m.as_of.tolist() == [-1, T0 + 1, -1, T0 + 3]
    assert np.isnan(m.values[[0, 2]]).all() and m.values[1, 0] == 1.0 and m.values[3, 2] == 3.0
    assert list(m.to_dict()) == ["x", "z"]
    empty = codec.matrix([], [])
    assert empty.values.shape == (0, 3) and empty.to_dict() == {}
    none = codec.matrix(["q"], [None])
    assert none.values.shape == (1, 3) and not none.found.any() and none.to_dict() == {}
    with pytest.raises(ValueError):
        codec.matrix(["q"], [])


def test_the_mapping_form_builds_each_vector_once_on_access() -> None:
    codec = LatestCodec(NAMES)
    m = codec.matrix(["x", "gone", "y"], [codec.encode(T0, {"a": 1.0}), None, codec.encode(T0 + 1, {"b": 2.0})])
    got = LatestVectors(m)
    assert list(got) == ["x", "y"] and len(got) == 2 and "gone" not in got
    assert got["y"][0] == T0 + 1 and got["y"][1]["b"] == 2.0 and got["y"] is got["y"]
    with pytest.raises(KeyError):
        got["gone"]
    y = got["y"]
    assert dict(got.items())["y"] is y and list(got.values())[1] is y  # bulk build keeps what was handed out
    eager = m.to_dict()
    assert all(t == eager[e][0] and all(same(v[k], eager[e][1][k]) for k in NAMES) for e, (t, v) in got.items())


def test_values_of_the_json_format_are_still_read_next_to_new_ones() -> None:
    codec = LatestCodec(NAMES)
    old = orjson.dumps({"as_of": T0, "f": {"b": 2.0, "a": None, "gone": 9.0}})  # written before format 1
    m = codec.matrix(["old", "new"], [old, codec.encode(T0 + 1, {"a": 1.0, "b": 2.0, "c": 3.0})])
    assert m.as_of.tolist() == [T0, T0 + 1]
    assert math.isnan(m.values[0, 0]) and m.values[0, 1] == 2.0 and math.isnan(m.values[0, 2])
    assert m.values[1].tolist() == [1.0, 2.0, 3.0]


def test_a_value_of_another_feature_list_is_refused() -> None:
    other = LatestCodec(("a", "b")).encode(T0, {"a": 1.0})
    with pytest.raises(FeatureError, match="neither format"):
        LatestCodec(NAMES).matrix(["x"], [other])
    same_size_other_count = b"DLv\x01" + struct.pack("<I", 9) + bytes(8 + 24)
    with pytest.raises(FeatureError):
        LatestCodec(NAMES).matrix(["x", "y"], [LatestCodec(NAMES).encode(T0, {}), same_size_other_count])


floats = st.floats(allow_nan=True, allow_infinity=True)
vectors = st.dictionaries(st.sampled_from(NAMES), floats)
entries = st.lists(st.one_of(st.none(), st.tuples(st.integers(-(2**62), 2**62), vectors)), max_size=30)


@given(entries)
@settings(max_examples=200, deadline=None)
def test_bulk_decode_equals_the_written_vectors(items: list) -> None:
    codec = LatestCodec(NAMES)
    ids = [f"e{i}" for i in range(len(items))]
    raws = [None if it is None else codec.encode(it[0], it[1]) for it in items]
    m = codec.matrix(ids, raws)
    assert m.values.shape == (len(items), len(NAMES))
    back = m.to_dict()
    assert list(back) == [e for e, it in zip(ids, items, strict=True) if it is not None] == list(LatestVectors(m))
    for e, it in zip(ids, items, strict=True):
        if it is None:
            continue
        as_of, vec = back[e]
        assert as_of == it[0] and list(vec) == list(NAMES)
        assert all(same(vec[k], it[1].get(k, math.nan)) for k in NAMES)
        one_as_of, one = codec.decode(codec.encode(*it))  # one value decodes like the batch
        assert one_as_of == as_of and all(same(one[k], vec[k]) for k in NAMES)


@given(st.lists(st.integers(0, 1_000_000), min_size=1, max_size=40), st.integers(0, 2_000_000),
       st.integers(1, 500_000))
@settings(max_examples=200, deadline=None)
def test_stale_mask_agrees_with_the_silence_tracker(last_ts: list[int], watermark: int, idle: int) -> None:
    codec = LatestCodec(NAMES)
    ids = [f"e{i}" for i in range(len(last_ts))]
    tracker = SilenceTracker(idle_ms=idle)
    for e, ts in zip(ids, last_ts, strict=True):
        tracker.observe(0, e, ts)
    m = codec.matrix(ids + ["ghost"], [codec.encode(ts, {"a": 1.0}) for ts in last_ts] + [None])
    flagged = {e for e, s in zip(m.ids, m.silent(watermark, idle).tolist(), strict=True) if s}
    assert flagged == {e for e, _ in tracker.due(0, watermark)}  # never-seen entities are not "silent"
