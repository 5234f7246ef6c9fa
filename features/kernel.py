"""The compiled form of a plan's ``apply`` and ``fold``: ``features._fold``, a C extension built at install; and
what every C part of driftline shares on the Python side (:func:`compiled_parts_on`, :func:`exact_double`).

:func:`compiled_kernel` turns what :func:`features.plan.compile_plan` decided (the row layout, the (window,
field) groups and their accumulator slots) into a spec for ``features._fold.Kernel``, whose ``apply`` and
``fold`` do what the generated Python does, the same double operations in the same order, so the features are
the same bits (``tests/features/test_kernel.py`` checks it on random views and streams). The Python code stays
the reference and the fallback:

* a view with a ``distinct_count`` feature keeps the Python fold (distinct values are Python sets);
* a value the kernel cannot read as the double Python would (a big int, a non-number, a values mapping that is
  not a dict) is applied by the Python ``apply``;
* without the extension (a build without a C compiler) or with ``DRIFTLINE_PURE_PYTHON=1``, plans are pure
  Python.

Example:
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> from features.plan import compile_plan
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("m", "x", "mean", Window("sliding", 20_000)),))
    >>> compile_plan(view, compiled=True).compiled == available()
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:
    from features._fold import Kernel
except ImportError:  # built without a C compiler: the generated Python serves
    Kernel = None

#: the kernel's slot order: the 13 partial slots of ``features.plan.SLOTS``, then the accumulator-only ewma
KERNEL_SLOTS = ("n", "s", "m2", "mn", "mx", "fts", "fv", "lts", "lv", "st", "stt", "sty", "ang", "ew")
_INIT = {"0": 0.0, "0.0": 0.0, "NAN": math.nan}
#: the result kinds the kernel's ``emit`` computes (its ``K_*`` codes, same order): every aggregation but
#: ``distinct_count``, whose views keep the Python plan
EMIT_KINDS = ("count", "sum", "mean", "min", "max", "std", "first", "last", "delta", "slope", "ewma",
              "angle_change_rate", "integral")


def available() -> bool:
    """Whether the extension was built."""
    return Kernel is not None


def compiled_parts_on(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether driftline's C parts serve where they are built (this kernel, ``features.record_parser``'s parser,
    ``monitor.sensor_checks``' kernel): not turned off with ``DRIFTLINE_PURE_PYTHON=1``."""
    return environ.get("DRIFTLINE_PURE_PYTHON", "") in ("", "0")


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether plans use the kernel: built, and not turned off with ``DRIFTLINE_PURE_PYTHON=1``."""
    return available() and compiled_parts_on(environ)


def exact_double(value: object) -> float | None:
    """``value`` as the double a C part compares with, or None when no double stands for it exactly (a bool or a
    non-number, infinities and NaN, an int past the float range or between two doubles): then only Python compares
    it as Python does.

    >>> exact_double(3), exact_double(0.5), exact_double(2**53 + 1), exact_double(10**400), exact_double(True)
    (3.0, 0.5, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        as_float = float(value)
    except OverflowError:
        return None
    return as_float if math.isfinite(as_float) and as_float == value else None


def compiled_kernel(width: int, windows: int, locals_: Sequence[str], init: Mapping[str, str],
                    by_field: Mapping[str, Sequence[tuple[int, Mapping[str, str], set[str]]]],
                    offsets: Mapping[str, Mapping[str, int]],
                    apply_fields: Sequence[tuple[str, bool, bool]], angle: set[str],
                    alpha: float, py_apply: Callable[..., None],
                    emits: Sequence[tuple[str, str, Mapping[str, str], set[str]]] = (),
                    py_emit: Callable[[tuple], dict[str, float]] | None = None, step_bucket_ms: int = 0) -> Any | None:
    """A ``Kernel`` for a plan, or None when the plan needs Python (distinct values, no extension).

    ``locals_``: the accumulator's names in tuple order, ``init`` their initial expressions; ``by_field``:
    per field its groups as (window index, slot -> accumulator name, slots kept); ``offsets``: per stored
    field, slot -> index in the bucket row; ``apply_fields``: (name, is_str, is_angle) of the fields
    ``apply`` folds in, in order; ``emits``: per feature (definition order) its name, aggregation, its group's
    slot -> accumulator name and slots kept, for the compiled ``emit`` (with ``py_emit``, the generated one,
    for an accumulator it does not take); ``step_bucket_ms`` (> 0 when every window is sliding): the bucket size,
    for the compiled common case of ``EntityState.step``."""
    if Kernel is None or width == 0 or any("ds" in slots for uses in by_field.values() for _, _, slots in uses):
        return None
    index = {name: i for i, name in enumerate(locals_)}

    def row(field: str) -> tuple[int, ...]:
        return tuple(offsets[field].get(slot, -1) for slot in KERNEL_SLOTS[:13])

    fold_fields = []
    for field, uses in by_field.items():
        wins = tuple(sorted({wi for wi, _, _ in uses}))
        groups = tuple((wi, int(len(wins) > 1), int(field in angle),
                        tuple(index[v[slot]] if slot in slots else -1 for slot in KERNEL_SLOTS))
                       for wi, v, slots in uses)
        fold_fields.append((wins, row(field), groups))
    applies = tuple((name, is_str, is_angle, row(name)) for name, is_str, is_angle in apply_fields)
    init_values = tuple(_INIT[init[name]] for name in locals_)
    if py_emit is None:
        return Kernel(width, windows, init_values, alpha, tuple(fold_fields), applies, py_apply)
    emit_features = tuple((name, EMIT_KINDS.index(agg), tuple(index[v[slot]] if slot in slots else -1
                                                                for slot in KERNEL_SLOTS))
                          for name, agg, v, slots in emits)
    return Kernel(width, windows, init_values, alpha, tuple(fold_fields), applies, py_apply, emit_features, py_emit,
                  step_bucket_ms)
