"""Compiled evaluation plan of a feature view: one specialised pass over the buckets for all windows.

``features.aggregations.fold`` merges all 13 partial slots of one bucket per call. Reading a feature
vector that way costs one call per (bucket, field, window), and every slot is merged even when the view
only asks for a mean. :func:`plan_for` compiles a view once into:

* ``starts(now_ms, last)``: the first bucket of every distinct window of the view (all end at ``last``);
* ``fold(acc, buckets, order, lo, hi, starts) -> acc``: **one** loop over the live buckets
  ``order[lo:hi]`` in time order that merges each bucket into every (window, field) group whose window
  has started, and for each group **only the slots its aggregations read** (a mean needs count and sum;
  std adds M2; slope adds first/last time and the least-squares sums, ...). Features sharing a (window,
  field), like ``hr_mean_5m``/``hr_std_5m``/``hr_max_5m``, share one merge. ``acc`` is a flat tuple of
  the locals (``None`` to start empty), so a fold can continue from a cached prefix;
* ``emit(acc) -> dict``: the feature vector (definition order) from a fold.

Every merged slot is computed by the same expression, in the same order, as ``fold`` and the result
functions of ``AGGREGATIONS``, so the values are bit-identical to the reference path (pinned by
``tests/features/test_plan.py``); the generated code is kept in ``Plan.source`` for reading.

Example:
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("m", "x", "mean", Window("sliding", 20_000)),
    ...                     FeatureSpec("hi", "x", "max", Window("sliding", 10_000))))
    >>> plan = plan_for(view)
    >>> buckets = {0: {"x": [2, 3.0, 0.5, 1.0, 2.0, 0, 1.0, 1, 2.0, 0.0, 0.0, 0.0, 0.0]},
    ...            10_000: {"x": [1, 5.0, 0.0, 5.0, 5.0, 10_000, 5.0, 10_000, 5.0, 0.0, 0.0, 0.0, 0.0]}}
    >>> plan.starts(10_000, 10_000)
    (0, 10000)
    >>> plan.emit(plan.fold(None, buckets, [0, 10_000], 0, 2, (0, 10_000)))
    {'m': 2.6666666666666665, 'hi': 5.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from features.aggregations import AGGREGATIONS, EWMA_ALPHA, NAN, angle_diff, slope_of
from features.definitions import FeatureView, Window
from features.per_view import per_view

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

Fold = Callable[[tuple | None, dict[int, dict[str, list]], list[int], int, int, tuple[int, ...]], tuple]
Emit = Callable[[tuple], dict[str, float]]


@dataclass(frozen=True)
class Plan:
    """A compiled feature view.

    ``fields``: what ``apply`` folds in, as (name, is_str, angle, distinct). ``windows``: the distinct
    windows of the view; ``starts(now_ms, last)`` returns their first bucket starts (``last`` is the
    start of the bucket of now). ``fold(acc, buckets, order, lo, hi, starts)`` merges the live buckets
    ``order[lo:hi]`` into every window that starts at or before each of them; ``emit(acc)`` returns
    the feature vector. ``source`` is the generated code.
    """

    bucket_ms: int
    names: tuple[str, ...]
    fields: tuple[tuple[str, bool, bool, bool], ...]
    windows: tuple[Window, ...]
    starts: Callable[[int, int], tuple[int, ...]]
    fold: Fold
    emit: Emit
    source: str


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
    if has("m2"):
        rest = [
            f"n_new = {v['n']} + nb",
            f"delta = mean_b - {v['s']} / {v['n']}",
            f"{v['m2']} += p[2] + delta * delta * {v['n']} * nb / n_new",
            f"{v['n']} = n_new",
        ]
    else:
        rest = [f"{v['n']} += nb"]
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


def _nothing(*args: Any) -> tuple:
    return ()


def compile_plan(view: FeatureView) -> Plan:
    """Compile ``view`` (use :func:`plan_for`, which caches): one pass over the buckets for all windows.

    Every window ends at the bucket of now, so one walk in time order from the earliest window start
    serves them all; each (window, field) group merges a bucket only from its own window start on, so
    every group sees the same left fold as on its own.
    """
    angle = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_angle}
    distinct = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_distinct}
    fields = tuple((f.name, f.type == "str", f.name in angle, f.name in distinct) for f in view.fields)
    if not view.features:
        return Plan(view.bucket_ms, (), fields, (), _nothing, _nothing, lambda acc: {}, "")
    windows: list[Window] = []
    groups: dict[tuple[int, str], list[tuple[str, str]]] = {}  # (window index, field) -> [(name, agg)]
    for feat in view.features:
        if feat.window not in windows:
            windows.append(feat.window)
        groups.setdefault((windows.index(feat.window), feat.field), []).append((feat.name, feat.agg))
    locals_: list[str] = []
    init: list[str] = []
    results: list[str] = []
    by_field: dict[str, list[tuple[int, dict[str, str], set[str]]]] = {}
    for gi, ((wi, field), feats) in enumerate(groups.items()):
        slots = _closure(set().union(*(_NEEDS[agg] for _, agg in feats)))
        v = {slot: f"g{gi}_{slot}" for slot in _ORDER}
        locals_ += [v[s] for s in _ORDER if s in slots]
        init += [f"{v[s]} = {_INIT[s]}" for s in _ORDER if s in slots]
        by_field.setdefault(field, []).append((wi, v, slots))
    for feat in view.features:  # results in definition order
        wi = windows.index(feat.window)
        v = {slot: f"g{list(groups).index((wi, feat.field))}_{slot}" for slot in _ORDER}
        results.append(f"{feat.name!r}: {_RESULT[feat.agg].format(**v)},")
    head: list[str] = []
    body: list[str] = []
    for fi, (field, uses) in enumerate(by_field.items()):
        wis = sorted({wi for wi, _, _ in uses})
        head.append(
            f"f{fi} = {'min(' + ', '.join(f'o{w}' for w in wis) + ')' if len(wis) > 1 else f'o{wis[0]}'}"
        )
        body += [
            f"if b >= f{fi}:",
            f"    p = bk.get({field!r})",
            "    if p is not None:",
            "        nb = p[0]",
        ]
        body.append("        if nb:")
        for wi, v, slots in uses:
            merge = _merge_lines(v, slots, field in angle)
            if "st" in slots:
                merge.insert(0, f"d = (b - o{wi}) / 1000.0")
            if len(wis) > 1:
                body += [f"            if b >= o{wi}:", *["                " + line for line in merge]]
            else:
                body += ["            " + line for line in merge]
    tup = ", ".join(locals_) + ","
    origins = ", ".join(f"o{wi}" for wi in range(len(windows))) + ","
    starts = ", ".join(
        f"last - {w.size_ms - view.bucket_ms}"
        if w.kind == "sliding"
        else f"W{wi}.bucket_range({view.bucket_ms}, now_ms)[0]"
        for wi, w in enumerate(windows)
    )
    src = [
        "def starts(now_ms, last):",
        f"    return ({starts},)",
        "",
        "def fold(acc, buckets, order, lo, hi, origins):",
        f"    ({origins}) = origins",
        *["    " + line for line in head],
        "    if acc is None:",
        *["        " + line for line in init],
        "    else:",
        f"        ({tup}) = acc",
        *[f"        {n} = set({n})" for n in locals_ if n.endswith("_ds")],
        "    for b in order[lo:hi]:",
        "        bk = buckets[b]",
        *["        " + line for line in body],
        f"    return ({tup})",
        "",
        "def emit(acc):",
        f"    ({tup}) = acc",
        "    return {",
        *["        " + line for line in results],
        "    }",
    ]
    source = "\n".join(src) + "\n"
    ns = dict(_NAMESPACE, **{f"W{wi}": w for wi, w in enumerate(windows)})
    exec(compile(source, f"<features.plan {view.name} v{view.version}>", "exec"), ns)  # noqa: S102 - own template
    return Plan(
        view.bucket_ms,
        view.feature_names,
        fields,
        tuple(windows),
        ns["starts"],
        ns["fold"],
        ns["emit"],
        source,
    )


#: the compiled (cached) evaluation plan of a view
plan_for: Callable[[FeatureView], Plan] = per_view(compile_plan)
