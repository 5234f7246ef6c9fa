"""Compiled evaluation plan of a feature view: one specialised fold function per window.

``features.aggregations.fold`` merges all 13 partial slots of one bucket per call. Reading a feature
vector that way costs one call per (bucket, field, window), and every slot is merged even when the view
only asks for a mean. :func:`plan_for` compiles a view once into, per distinct window:

* ``fold(acc, buckets, order, lo, hi, origin_ms) -> acc``: one loop over the live buckets
  ``order[lo:hi]`` that merges, for every field the window's features read, **only the slots those
  aggregations need** (a mean needs count and sum; std adds M2; slope adds first/last time and the
  least-squares sums, ...). ``acc`` is a flat tuple of the locals (``None`` to start empty), so a fold
  can continue from a cached prefix;
* ``emit(acc, out)``: writes the window's features into ``out``.

Every merged slot is computed by the same expression, in the same order, as ``fold`` and the result
functions of ``AGGREGATIONS``, so the values are bit-identical to the reference path (pinned by
``tests/features/test_plan.py``); the generated source is kept in ``WindowPlan.source`` for reading.

Example:
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("m", "x", "mean", Window("sliding", 60_000)),
    ...                     FeatureSpec("hi", "x", "max", Window("sliding", 60_000))))
    >>> wp = plan_for(view).windows[0]
    >>> buckets = {0: {"x": [2, 3.0, 0.5, 1.0, 2.0, 0, 1.0, 1, 2.0, 0.0, 0.0, 0.0, 0.0]},
    ...            10_000: {"x": [1, 5.0, 0.0, 5.0, 5.0, 10_000, 5.0, 10_000, 5.0, 0.0, 0.0, 0.0, 0.0]}}
    >>> out = {}
    >>> wp.emit(wp.fold(None, buckets, [0, 10_000], 0, 2, 0), out)
    >>> out
    {'m': 2.6666666666666665, 'hi': 5.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from features.aggregations import AGGREGATIONS, EWMA_ALPHA, NAN, angle_diff, slope_of
from features.definitions import FeatureView, Window

# Accumulator locals: name -> initial value (as in ``new_accumulator``).
_INIT = {
    "n": "0",
    "s": "0.0",
    "m2": "0.0",
    "mn": "NAN",
    "mx": "NAN",
    "fts": "0",
    "fv": "NAN",
    "lts": "0",
    "lv": "NAN",
    "st": "0.0",
    "stt": "0.0",
    "sty": "0.0",
    "ang": "0.0",
    "ew": "NAN",
    "ds": "set()",
}
_ORDER = tuple(_INIT)

# What each aggregation reads from the accumulator ("n" is always kept: it marks the first bucket).
_NEEDS: dict[str, frozenset[str]] = {
    "count": frozenset(),
    "sum": frozenset({"s"}),
    "mean": frozenset({"s"}),
    "min": frozenset({"mn"}),
    "max": frozenset({"mx"}),
    "std": frozenset({"s", "m2"}),
    "first": frozenset({"fv"}),
    "last": frozenset({"lv"}),
    "delta": frozenset({"fv", "lv"}),
    "slope": frozenset({"s", "fts", "lts", "st", "stt", "sty"}),
    "ewma": frozenset({"ew"}),
    "distinct_count": frozenset({"ds"}),
    "angle_change_rate": frozenset({"ang", "fts", "lts"}),
    "integral": frozenset({"s", "fts", "lts"}),
}
# Result expressions, mirroring the result functions of ``features.aggregations``.
_RESULT = {
    "count": "float({n})",
    "sum": "float({s}) if {n} else 0.0",
    "mean": "{s} / {n} if {n} else NAN",
    "min": "float({mn}) if {n} else NAN",
    "max": "float({mx}) if {n} else NAN",
    "std": "sqrt(max({m2}, 0.0) / {n}) if {n} else NAN",
    "first": "float({fv}) if {n} else NAN",
    "last": "float({lv}) if {n} else NAN",
    "delta": "float({lv} - {fv}) if {n} else NAN",
    "slope": "slope_of({n}, {s}, {fts}, {lts}, {st}, {stt}, {sty})",
    "ewma": "float({ew}) if {n} else NAN",
    "distinct_count": "float(len({ds}))",
    "angle_change_rate": "NAN if {n} < 2 or {lts} == {fts} else {ang} / (({lts} - {fts}) / 1000.0)",
    "integral": "({s} / {n}) * (({lts} - {fts}) / 1000.0) if {n} else 0.0",
}
assert _NEEDS.keys() == _RESULT.keys() == AGGREGATIONS.keys()

_NAMESPACE: dict[str, Any] = {
    "NAN": NAN,
    "sqrt": math.sqrt,
    "angle_diff": angle_diff,
    "slope_of": slope_of,
    "ALPHA": EWMA_ALPHA,
    "ONE_MINUS_ALPHA": 1.0 - EWMA_ALPHA,
}

Fold = Callable[[tuple | None, dict[int, dict[str, list]], list[int], int, int, int], tuple]
Emit = Callable[[tuple, dict[str, float]], None]


@dataclass(frozen=True)
class WindowPlan:
    """The compiled read of one window: its fold, its emit, the generated source, and for sliding
    windows ``back_ms`` (window start = start of the bucket of now - ``back_ms``; None otherwise)."""

    window: Window
    fold: Fold
    emit: Emit
    source: str
    back_ms: int | None


@dataclass(frozen=True)
class Plan:
    """A compiled feature view: fields to apply (name, is_str, angle, distinct) and one plan per window."""

    bucket_ms: int
    names: tuple[str, ...]
    fields: tuple[tuple[str, bool, bool, bool], ...]
    windows: tuple[WindowPlan, ...]


def _closure(needs: set[str]) -> set[str]:
    """Slots needed to maintain ``needs`` (first/last values follow their timestamps; angles need last)."""
    out = set(needs) | {"n"}
    if "fv" in out:
        out.add("fts")
    if "ang" in out:
        out |= {"lv", "lts"}
    if "lv" in out:
        out.add("lts")
    return out


def _merge_lines(v: dict[str, str], slots: set[str], angle: bool) -> list[str]:
    """Statements merging partial ``p`` (count ``nb``) into the locals ``v``: a copy of ``fold``."""
    has = slots.__contains__
    out = []
    if has("s") or has("m2") or has("ew") or has("sty"):
        out.append("sb = p[1]")
    if has("m2") or has("ew"):
        out.append("mean_b = sb / nb")
    if has("st"):
        out.append("pst = p[9]")
    out.append(f"if {v['n']} == 0:")
    first = [f"{v['n']} = nb"]
    first += [f"{v['s']} = sb"] if has("s") else []
    first += [f"{v['m2']} = p[2]"] if has("m2") else []
    first += [f"{v['mn']} = p[3]"] if has("mn") else []
    first += [f"{v['mx']} = p[4]"] if has("mx") else []
    first += [f"{v['fts']} = p[5]"] if has("fts") else []
    first += [f"{v['fv']} = p[6]"] if has("fv") else []
    first += [f"{v['lts']} = p[7]"] if has("lts") else []
    first += [f"{v['lv']} = p[8]"] if has("lv") else []
    if has("st"):
        first += [
            f"{v['st']} = pst + nb * d",
            f"{v['stt']} = p[10] + 2.0 * d * pst + nb * d * d",
            f"{v['sty']} = p[11] + d * sb",
        ]
    first += [f"{v['ang']} = p[12]"] if has("ang") else []
    first += [f"{v['ew']} = mean_b"] if has("ew") else []
    out += ["    " + line for line in first]
    out.append("else:")
    rest = [f"n_new = {v['n']} + nb"]
    if has("m2"):
        rest += [
            f"delta = mean_b - {v['s']} / {v['n']}",
            f"{v['m2']} += p[2] + delta * delta * {v['n']} * nb / n_new",
        ]
    rest.append(f"{v['n']} = n_new")
    rest += [f"{v['s']} += sb"] if has("s") else []
    rest += [f"if p[3] < {v['mn']}:", f"    {v['mn']} = p[3]"] if has("mn") else []
    rest += [f"if p[4] > {v['mx']}:", f"    {v['mx']} = p[4]"] if has("mx") else []
    if has("ang") and angle:
        rest.append(f"{v['ang']} += p[12] + angle_diff({v['lv']}, p[6])")
    if has("fts"):
        rest += [f"if p[5] < {v['fts']}:", f"    {v['fts']} = p[5]"]
        rest += [f"    {v['fv']} = p[6]"] if has("fv") else []
    if has("lts"):
        rest += [f"if p[7] >= {v['lts']}:", f"    {v['lts']} = p[7]"]
        rest += [f"    {v['lv']} = p[8]"] if has("lv") else []
    if has("st"):
        rest += [
            f"{v['st']} += pst + nb * d",
            f"{v['stt']} += p[10] + 2.0 * d * pst + nb * d * d",
            f"{v['sty']} += p[11] + d * sb",
        ]
    rest += [f"{v['ew']} = ALPHA * mean_b + ONE_MINUS_ALPHA * {v['ew']}"] if has("ew") else []
    out += ["    " + line for line in rest]
    if has("ds"):
        out += ["if len(p) > 13:", f"    {v['ds']} |= p[13]"]
    return out


def _compile_window(
    window: Window,
    bucket_ms: int,
    groups: dict[str, list[tuple[str, str]]],
    angle: set[str],
    distinct: set[str],
) -> WindowPlan:
    """Generate and compile the fold and emit functions of one window (``groups``: field -> features)."""
    locals_: list[str] = []
    init: list[str] = []
    body: list[str] = []
    results: list[str] = []
    any_slope = False
    for gi, (field, feats) in enumerate(groups.items()):
        slots = _closure(set().union(*(_NEEDS[agg] for _, agg in feats)))
        if field not in distinct:
            slots.discard("ds")
        v = {slot: f"g{gi}_{slot}" for slot in _ORDER}
        names = [v[s] for s in _ORDER if s in slots]
        locals_ += names
        init += [f"{v[s]} = {_INIT[s]}" for s in _ORDER if s in slots]
        any_slope |= "st" in slots
        body += [f"p = bk.get({field!r})", "if p is not None:", "    nb = p[0]", "    if nb:"]
        body += ["        " + line for line in _merge_lines(v, slots, field in angle)]
        results += [f"out[{name!r}] = {_RESULT[agg].format(**v)}" for name, agg in feats]
    tup = ", ".join(locals_) + ","
    copy_sets = [f"    {n} = set({n})" for n in locals_ if n.endswith("_ds")]
    src = [
        "def fold(acc, buckets, order, lo, hi, origin_ms):",
        "    if acc is None:",
        *["        " + line for line in init],
        "    else:",
        f"        ({tup}) = acc",
        *["    " + line for line in copy_sets],
        "    for b in order[lo:hi]:",
        "        bk = buckets[b]",
        *(["        d = (b - origin_ms) / 1000.0"] if any_slope else []),
        *["        " + line for line in body],
        f"    return ({tup})",
        "",
        "def emit(acc, out):",
        f"    ({tup}) = acc",
        *["    " + line for line in results],
    ]
    source = "\n".join(src) + "\n"
    ns = dict(_NAMESPACE)
    exec(compile(source, f"<features.plan window {window}>", "exec"), ns)  # noqa: S102 - our own template
    back = window.size_ms - bucket_ms if window.kind == "sliding" else None
    return WindowPlan(window, ns["fold"], ns["emit"], source, back)


def compile_plan(view: FeatureView) -> Plan:
    """Compile ``view`` (use :func:`plan_for`, which caches)."""
    angle = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_angle}
    distinct = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_distinct}
    fields = tuple((f.name, f.type == "str", f.name in angle, f.name in distinct) for f in view.fields)
    by_window: dict[Window, dict[str, list[tuple[str, str]]]] = {}
    for feat in view.features:
        by_window.setdefault(feat.window, {}).setdefault(feat.field, []).append((feat.name, feat.agg))
    windows = tuple(
        _compile_window(w, view.bucket_ms, groups, angle, distinct) for w, groups in by_window.items()
    )
    return Plan(view.bucket_ms, view.feature_names, fields, windows)


_PLANS: dict[int, tuple[FeatureView, Plan]] = {}


def plan_for(view: FeatureView) -> Plan:
    """The compiled (cached) evaluation plan of ``view``."""
    entry = _PLANS.get(id(view))
    if entry is None or entry[0] is not view:
        entry = (view, compile_plan(view))
        _PLANS[id(view)] = entry
    return entry[1]
