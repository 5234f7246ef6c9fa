"""``models.frozen.fast_frozen_init`` builds the same objects as the dataclass ``__init__`` it replaces."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.frozen import fast_frozen_init
from models.prediction import Prediction
from models.scorer import ScoringRow

anything = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                     st.dictionaries(st.text(max_size=3), st.floats(allow_nan=False), max_size=3))


@pytest.mark.parametrize("cls", [Prediction, ScoringRow])
def test_same_signature_as_the_dataclass_init(cls: type) -> None:
    fast, generated = inspect.signature(cls.__init__), inspect.signature(cls.__init__.dataclass_init)
    assert [(p.name, p.default, p.kind) for p in fast.parameters.values()] == [
        (p.name, p.default, p.kind) for p in generated.parameters.values()]


@pytest.mark.parametrize("cls", [Prediction, ScoringRow])
@given(data=st.data())
def test_same_object_as_the_dataclass_init(cls: type, data: st.DataObject) -> None:
    fields = dataclasses.fields(cls)
    required = [f for f in fields if f.default is dataclasses.MISSING]
    values = [data.draw(anything) for _ in fields[: data.draw(st.integers(len(required), len(fields)))]]
    as_keywords = data.draw(st.booleans())
    kwargs = {f.name: v for f, v in zip(fields, values, strict=False)} if as_keywords else {}
    args = [] if as_keywords else values
    fast = cls(*args, **kwargs)
    reference = object.__new__(cls)
    cls.__init__.dataclass_init(reference, *args, **kwargs)
    assert repr(fast) == repr(reference) and fast == reference
    for f in fields:
        assert getattr(fast, f.name) is getattr(reference, f.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(fast, fields[0].name, 1)
    assert dataclasses.replace(fast) == fast


def test_missing_arguments_fail_as_before() -> None:
    with pytest.raises(TypeError):
        ScoringRow("k", "e", 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ScoringRow("k", "e", 1, {}, extra=2)  # type: ignore[call-arg]


def test_only_for_frozen_slotted_dataclasses_without_post_init() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        x: list = dataclasses.field(default_factory=list)

    for cls in (NoSlots, WithFactory):
        with pytest.raises(TypeError):
            fast_frozen_init(cls)
