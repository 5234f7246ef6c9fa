"""``features._save`` (C) writes a save call's wire bytes: the same bytes as hiredis packing ``save_call`` (the
reference), on random states (dirty and expired buckets, distinct-value sets), latest vectors (whole, missing or
extra features, ints) and entity ids; and it takes the common case instead of leaving it to Python."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import save_wire
from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.exceptions import FeatureError
from features.latest import codec_for
from features.records import Event
from features.redis_packed import pack_evalsha
from features.state import EntityState
from features.store import SaveRequest, SourcePosition, latest_key_for, offset_key_for, state_key_for
from tests.budget import examples

pytestmark = pytest.mark.skipif(save_wire.pack_save is None, reason="features._save was not built")

SHA = "0123456789abcdef0123456789abcdef01234567"
MINUTE = 60_000
FIELDS = (FieldSpec("x"), FieldSpec("y"))
PLAIN = FeatureView("w", 1, "t", "id", "ts", FIELDS,
                    (FeatureSpec("x_mean", "x", "mean", Window("sliding", 5 * MINUTE)),
                     FeatureSpec("y_max", "y", "max", Window("sliding", 15 * MINUTE)),
                     FeatureSpec("x_slope", "x", "slope", Window("sliding", 10 * MINUTE))))
DISTINCT = FeatureView("d", 1, "t", "id", "ts", FIELDS,
                       (FeatureSpec("x_n", "x", "distinct_count", Window("sliding", 5 * MINUTE)),))

values = st.floats(allow_nan=True, allow_infinity=True, width=64)
ids = st.text(min_size=1, max_size=6).filter(lambda s: _encodable(s))


def _encodable(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


@st.composite
def states(draw: st.DrawFn, view: FeatureView) -> EntityState:
    """A state after a random stream, maybe saved part-way (fewer dirty buckets) and expired (deleted buckets)."""
    st_ = EntityState()
    t = 0
    for _ in range(draw(st.integers(0, 12))):
        t += draw(st.integers(0, 4 * MINUTE))
        st_.apply(view, Event("e", t, {"x": draw(values), "y": float(draw(st.integers(-5, 5)))}))
        if draw(st.booleans()) and draw(st.booleans()):
            st_.mark_saved()
    if draw(st.booleans()):
        st_.expire(draw(st.integers(0, t + MINUTE)))
    return st_


@st.composite
def vectors(draw: st.DrawFn, names: tuple[str, ...]) -> dict:
    kind = draw(st.sampled_from(["whole", "whole", "whole", "missing", "extra", "int"]))
    vector = {n: draw(values) for n in names}
    if kind == "missing":
        vector.pop(draw(st.sampled_from(names)))
    elif kind == "extra":
        vector["not_a_feature"] = 1.0
    elif kind == "int":
        vector[draw(st.sampled_from(names))] = draw(st.integers(-10, 10))
    return vector


@st.composite
def requests(draw: st.DrawFn, view: FeatureView) -> SaveRequest:
    entity_states = draw(st.dictionaries(ids, states(view), max_size=5))
    latest = draw(st.none() | st.dictionaries(ids, st.tuples(st.integers(-2**62, 2**62),
                                                             vectors(view.feature_names)), max_size=5))
    pos = SourcePosition(draw(st.text(max_size=4)), "t", draw(st.integers(0, 40)))
    expected = draw(st.integers(-1, 2**40))
    return SaveRequest(pos, entity_states, expected, expected + draw(st.integers(0, 9)), draw(st.integers(1, 10**9)),
                       draw(st.none() | st.integers(0, 2**45)), latest)


def reference(view: FeatureView, r: SaveRequest) -> bytes | FeatureError:
    try:
        return pack_evalsha(SHA, *save_wire.save_call(view, r))
    except FeatureError as exc:
        return exc


@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from([PLAIN, DISTINCT]).flatmap(lambda v: st.tuples(st.just(v), requests(v))))
def test_the_compiled_call_is_the_reference_call_byte_for_byte(case: tuple[FeatureView, SaveRequest]) -> None:
    view, r = case
    expected = reference(view, r)
    if isinstance(expected, FeatureError):  # a vector with a feature the view lacks: refused either way
        with pytest.raises(FeatureError):
            save_wire.packed_save_call(view, r, SHA)
        return
    assert save_wire.packed_save_call(view, r, SHA) == expected


@settings(max_examples=examples(200), deadline=None)
@given(st.sampled_from([PLAIN, DISTINCT]).flatmap(lambda v: st.tuples(st.just(v), requests(v))), st.booleans())
def test_a_started_save_marks_its_states_saved_once_the_bytes_are_made(case: tuple[FeatureView, SaveRequest],
                                                                        pure: bool) -> None:
    """``mark_saved=True`` (a started save): the same bytes, and then every state of the request is clean (its
    changes are in the bytes), whether C or Python made them; refused (a vector the view lacks): nothing marked;
    ``mark_saved=False``: nothing marked."""
    view, r = case
    before = {e: state.to_redis() for e, state in r.states.items()}
    expected = reference(view, r)
    with pytest.MonkeyPatch.context() as mp:
        if pure:
            mp.setenv("DRIFTLINE_PURE_PYTHON", "1")
        if isinstance(expected, FeatureError):
            with pytest.raises(FeatureError):
                save_wire.packed_save_call(view, r, SHA, mark_saved=True)
            assert {e: state.to_redis() for e, state in r.states.items()} == before
            return
        assert save_wire.packed_save_call(view, r, SHA) == expected
        assert {e: state.to_redis() for e, state in r.states.items()} == before
        assert save_wire.packed_save_call(view, r, SHA, mark_saved=True) == expected
    for state in r.states.values():
        assert state.to_redis() == ({}, [])
        assert state._dirty is None and state._deleted is None


@settings(max_examples=examples(100), deadline=None)
@given(requests(PLAIN))
def test_the_common_case_is_compiled(r: SaveRequest) -> None:
    """No distinct sets, whole float vectors: the extension writes the call itself (not left to Python)."""
    whole = all(type(v) is dict and set(v) == set(PLAIN.feature_names) and all(type(x) is float for x in v.values())
                for _, v in (r.latest or {}).values())
    codec = codec_for(PLAIN.feature_names)
    packed = save_wire.pack_save(SHA, offset_key_for(PLAIN, r.pos), save_wire._head(r),
                                 state_key_for(PLAIN, r.pos, ""), dict(r.states), latest_key_for(PLAIN, r.pos, ""),
                                 r.latest, codec.feature_names, codec.head)
    assert (packed is not None) == whole
    if whole:
        assert packed == reference(PLAIN, r)


def test_a_distinct_state_and_a_partial_vector_are_left_to_python() -> None:
    codec = codec_for(PLAIN.feature_names)
    pos = SourcePosition("g", "t", 0)
    distinct = EntityState()
    distinct.apply(DISTINCT, Event("e", 0, {"x": 1.0}))
    common = (SHA, offset_key_for(DISTINCT, pos), (-1, 0, b"0", 60_000), state_key_for(DISTINCT, pos, ""))
    assert save_wire.pack_save(*common, {"e": distinct}, b"l:", None, codec.feature_names, codec.head) is None
    partial = {"e": (5, {"x_mean": 1.0})}
    assert save_wire.pack_save(*common, {}, b"l:", partial, codec.feature_names, codec.head) is None
    whole = {"e": (5, dict.fromkeys(PLAIN.feature_names, math.nan))}
    assert save_wire.pack_save(*common, {}, b"l:", whole, codec.feature_names, codec.head) is not None


def test_without_the_compiled_parts_the_call_is_packed_from_save_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DRIFTLINE_PURE_PYTHON=1`` (or a build without the extension): the same bytes, from the reference."""
    state = EntityState()
    state.apply(PLAIN, Event("e", 0, {"x": 1.0, "y": 2.0}))
    r = SaveRequest(SourcePosition("g", "t", 0), {"e": state}, -1, 0, 60_000, None,
                    {"e": (5, dict.fromkeys(PLAIN.feature_names, 0.5))})
    calls = []
    monkeypatch.setattr(save_wire, "save_call", lambda view, req: calls.append(req) or reference_call(view, req))
    compiled = save_wire.packed_save_call(PLAIN, r, SHA)
    assert calls == []  # the extension wrote it
    monkeypatch.setenv("DRIFTLINE_PURE_PYTHON", "1")
    assert save_wire.packed_save_call(PLAIN, r, SHA) == compiled and calls == [r]
    monkeypatch.delenv("DRIFTLINE_PURE_PYTHON")
    monkeypatch.setattr(save_wire, "pack_save", None)
    assert save_wire.packed_save_call(PLAIN, r, SHA) == compiled and len(calls) == 2


reference_call = save_wire.save_call
