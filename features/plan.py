"""Compiled evaluation plan of a feature view: its bucket row layout, ``apply``, and one specialised pass
over the buckets for all windows.

An entity's buckets are rows of one flat array of doubles (``features.state``). :func:`plan_for` compiles a
view once into:

* ``layout`` / ``width``: per field, the partial slots (of the 13 of ``features.aggregations``) that some
  feature of the view reads, and what keeping them needs (a std keeps count, sum and M2; a slope the
  least-squares sums and the first/last times; a field no feature reads keeps nothing);
* ``apply(data, base, bucket, ts, values)``: ``add_number`` / ``add_string`` of every field of an event into
  the row at ``base``, restricted to the kept slots (the same expressions, in the same order);
* ``starts(now_ms, last)``: the first bucket of every distinct window of the view (all end at ``last``);
* ``fold(acc, data, order, lo, hi, starts, sets) -> acc``: **one** loop over the rows ``lo:hi`` (bucket starts
  in ``order``) in time order that merges each bucket into every (window, field) group whose window
  has started, and for each group **only the slots its aggregations read** (a mean needs count and sum;
  std adds M2; slope adds first/last time and the least-squares sums, ...). Features sharing a (window,
  field), like ``hr_mean_5m``/``hr_std_5m``/``hr_max_5m``, share one merge. ``acc`` is a flat tuple of
  the locals (``None`` to start empty), so a fold can continue from a cached prefix; ``sets`` holds the
  distinct values per bucket and field index;
* ``emit(acc) -> dict``: the feature vector (definition order) from a fold.

``data`` is an ``array("d")`` and ``order`` an ``array("q")`` (as :class:`features.state.EntityState` holds them):
``apply``, ``fold`` and ``emit`` run in a C kernel (:mod:`features.kernel`) that does the same double operations in
the same order, unless the view keeps distinct values or the extension is not built (``Plan.compiled``).

Every kept slot is computed by the same expression, in the same order, as ``add_number``, ``fold`` and the
result functions of ``AGGREGATIONS``, so the values are bit-identical to the reference path (pinned by
``tests/features/test_plan.py``); the generated code is kept in ``Plan.source`` for reading. (Counts and
times are kept as doubles: exact for counts and epoch milliseconds below 2**53.)

Example:
    >>> from array import array
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("m", "x", "mean", Window("sliding", 20_000)),
    ...                     FeatureSpec("hi", "x", "max", Window("sliding", 10_000))))
    >>> plan = plan_for(view)
    >>> plan.layout, plan.width
    ((('x', (('n', 0), ('s', 1), ('mx', 2))),), 3)
    >>> data = array("d", [0.0] * 6)
    >>> for b, ts, x in [(0, 0, 1.0), (0, 1, 2.0), (10_000, 10_000, 5.0)]:
    ...     plan.apply(data, 0 if b == 0 else 3, b, ts, {"x": x})
    >>> plan.starts(10_000, 10_000)
    (0, 10000)
    >>> plan.emit(plan.fold(None, data, array("q", [0, 10_000]), 0, 2, (0, 10_000), None))
    {'m': 2.6666666666666665, 'hi': 5.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from features.aggregations import AGGREGATIONS, EWMA_ALPHA, NAN, angle_diff, slope_of
from features.definitions import FeatureView, Window
from features.kernel import KERNEL_SLOTS, compiled_kernel, wanted
from features.per_view import per_view

# Partial slots, in the order of the ``P_*`` indices of ``features.aggregations``.
SLOTS = ("n", "s", "m2", "mn", "mx", "fts", "fv", "lts", "lv", "st", "stt", "sty", "ang")
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
assert (*SLOTS, "ew") == KERNEL_SLOTS  # the C kernel's slot indices

_NAMESPACE: dict[str, Any] = {
    "NAN": NAN,
    "sqrt": math.sqrt,
    "angle_diff": angle_diff,
    "slope_of": slope_of,
    "ALPHA": EWMA_ALPHA,
    "ONE_MINUS_ALPHA": 1.0 - EWMA_ALPHA,
    "NO_SETS": {},
}

Fold = Callable[[tuple | None, Any, Any, int, int, tuple[int, ...], dict], tuple]
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
    layout: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()  # per stored field: (slot, row index)
    width: int = 0  # doubles per bucket row
    apply: Callable[[Any, int, int, int, Any], None] | None = None  # (data, base, bucket, ts, values)
    distinct: tuple[tuple[int, str], ...] = ()  # (layout index, field) of the fields keeping distinct values
    compiled: bool = False  # apply and fold are the C kernel's (features.kernel), not the generated Python's
    # the kernel's step(state, ts, values) -> dict | None: EntityState.step's common case in one C call (every
    # window sliding); None: EntityState.step in Python always
    step: Callable[[Any, int, Any], dict[str, float] | None] | None = None
    # the kernel's pack(acc) -> bytes | acc: a prefix fold as one bytes object of its doubles (what step reads
    # back) when every accumulator is an exact float; None: the state caches the tuple
    pack: Callable[[tuple], bytes | tuple] | None = None

    def row_from_partials(self, partials: dict[str, list]) -> list[float]:
        """One bucket row from 13-slot partials ``{field: [slots...]}`` (the former JSON encoding)."""
        row = [0.0] * self.width
        for name, off in self.layout:
            p = partials.get(name)
            if p is not None:
                for slot, i in off:
                    row[i] = float(p[SLOTS.index(slot)])
        return row

    def partials_of(self, row: Any) -> dict[str, list]:
        """The 13-slot partials of one bucket row (slots not kept read 0; fields without a value left out)."""
        out: dict[str, list] = {}
        for name, off in self.layout:
            slots = dict(off)
            if row[slots["n"]]:
                out[name] = [row[slots[slot]] if slot in slots else 0.0 for slot in SLOTS]
        return out


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


def _merge_lines(v: dict[str, str], slots: set[str], angle: bool, p: Callable[[int], str], ds: str) -> list[str]:
    """Statements merging a bucket partial (count ``nb``; slot ``k`` read as ``p(k)``, its distinct values as
    ``ds``) into the locals ``v``: a copy of ``fold``."""
    has = slots.__contains__
    out = []
    if has("s") or has("m2") or has("ew") or has("sty"):
        out.append(f"sb = {p(1)}")
    if has("m2") or has("ew"):
        out.append("mean_b = sb / nb")
    if has("st"):
        out.append(f"pst = {p(9)}")
    out.append(f"if {v['n']} == 0:")
    first = [f"{v['n']} = nb"]
    first += [f"{v['s']} = sb"] if has("s") else []
    first += [f"{v['m2']} = {p(2)}"] if has("m2") else []
    first += [f"{v['mn']} = {p(3)}"] if has("mn") else []
    first += [f"{v['mx']} = {p(4)}"] if has("mx") else []
    first += [f"{v['fts']} = {p(5)}"] if has("fts") else []
    first += [f"{v['fv']} = {p(6)}"] if has("fv") else []
    first += [f"{v['lts']} = {p(7)}"] if has("lts") else []
    first += [f"{v['lv']} = {p(8)}"] if has("lv") else []
    if has("st"):
        first += [
            f"{v['st']} = pst + nb * d",
            f"{v['stt']} = {p(10)} + 2.0 * d * pst + nb * d * d",
            f"{v['sty']} = {p(11)} + d * sb",
        ]
    first += [f"{v['ang']} = {p(12)}"] if has("ang") else []
    first += [f"{v['ew']} = mean_b"] if has("ew") else []
    out += ["    " + line for line in first]
    out.append("else:")
    if has("m2"):
        rest = [
            f"n_new = {v['n']} + nb",
            f"delta = mean_b - {v['s']} / {v['n']}",
            f"{v['m2']} += {p(2)} + delta * delta * {v['n']} * nb / n_new",
            f"{v['n']} = n_new",
        ]
    else:
        rest = [f"{v['n']} += nb"]
    rest += [f"{v['s']} += sb"] if has("s") else []
    rest += [f"if {p(3)} < {v['mn']}:", f"    {v['mn']} = {p(3)}"] if has("mn") else []
    rest += [f"if {p(4)} > {v['mx']}:", f"    {v['mx']} = {p(4)}"] if has("mx") else []
    if has("ang") and angle:
        rest.append(f"{v['ang']} += {p(12)} + angle_diff({v['lv']}, {p(6)})")
    if has("fts"):
        rest += [f"if {p(5)} < {v['fts']}:", f"    {v['fts']} = {p(5)}"]
        rest += [f"    {v['fv']} = {p(6)}"] if has("fv") else []
    if has("lts"):
        rest += [f"if {p(7)} >= {v['lts']}:", f"    {v['lts']} = {p(7)}"]
        rest += [f"    {v['lv']} = {p(8)}"] if has("lv") else []
    if has("st"):
        rest += [
            f"{v['st']} += pst + nb * d",
            f"{v['stt']} += {p(10)} + 2.0 * d * pst + nb * d * d",
            f"{v['sty']} += {p(11)} + d * sb",
        ]
    rest += [f"{v['ew']} = ALPHA * mean_b + ONE_MINUS_ALPHA * {v['ew']}"] if has("ew") else []
    out += ["    " + line for line in rest]
    if has("ds"):
        out += [f"dsv = {ds}", "if dsv:", f"    {v['ds']} |= dsv"]
    return out


def _nothing(*args: Any) -> tuple:
    return ()


def _stored(acc_slots: set[str]) -> set[str]:
    """Partial slots a field keeps per bucket so that the accumulator slots ``acc_slots`` can be folded, and
    the slots themselves maintained by ``apply`` (a Welford M2 needs the sum, an angle the first/last values...)."""
    out = {slot for slot in acc_slots if slot in SLOTS} | {"n"}
    if out & {"m2", "sty"} or "ew" in acc_slots:
        out.add("s")
    if out & {"st", "stt", "sty"}:
        out |= {"st", "stt", "sty"}
    if "ang" in out:
        out |= {"fts", "fv", "lts", "lv"}
    if "fv" in out:
        out.add("fts")
    if "lv" in out:
        out.add("lts")
    return out


def _apply_lines(field: str, off: dict[str, int], is_str: bool, angle: bool) -> list[str]:
    """``apply``'s statements for one field: ``add_number`` / ``add_string`` restricted to the stored slots
    ``off`` (slot -> index in the bucket row), the same expressions in the same order."""
    has = off.__contains__

    def d(slot: str) -> str:
        return f"data[base + {off[slot]}]"

    out = [f"x = values.get({field!r})", "if x is not None:", f"    n = {d('n')}"]
    if is_str:  # count (and distinct values, kept beside the row) only
        return [*out, f"    {d('n')} = n + 1.0"]
    first = [f"{d('n')} = 1.0"]
    first += [f"{d('s')} = x"] if has("s") else []
    first += [f"{d('m2')} = 0.0"] if has("m2") else []
    first += [f"{d(slot)} = x" for slot in ("mn", "mx") if has(slot)]
    first += [f"{d('fts')} = ts"] if has("fts") else []
    first += [f"{d('fv')} = x"] if has("fv") else []
    first += [f"{d('lts')} = ts"] if has("lts") else []
    first += [f"{d('lv')} = x"] if has("lv") else []
    if has("st"):
        first += ["dt = (ts - b) / 1000.0", f"{d('st')} = dt", f"{d('stt')} = dt * dt", f"{d('sty')} = dt * x"]
    first += [f"{d('ang')} = 0.0"] if has("ang") else []
    rest = [f"mean_old = {d('s')} / n"] if has("m2") else []
    rest += ["n += 1.0", f"{d('n')} = n"]
    if has("s"):
        rest += [f"s = {d('s')} + x", f"{d('s')} = s"]
    rest += [f"{d('m2')} += (x - mean_old) * (x - s / n)"] if has("m2") else []
    rest += [f"if x < {d('mn')}:", f"    {d('mn')} = x"] if has("mn") else []
    rest += [f"if x > {d('mx')}:", f"    {d('mx')} = x"] if has("mx") else []
    if has("ang") and angle:
        rest += [f"if ts >= {d('lts')}:", f"    {d('ang')} += angle_diff({d('lv')}, x)",
                 f"elif ts < {d('fts')}:", f"    {d('ang')} += angle_diff(x, {d('fv')})"]
    if has("fts"):
        rest += [f"if ts < {d('fts')}:", f"    {d('fts')} = ts"] + ([f"    {d('fv')} = x"] if has("fv") else [])
    if has("lts"):
        rest += [f"if ts >= {d('lts')}:", f"    {d('lts')} = ts"] + ([f"    {d('lv')} = x"] if has("lv") else [])
    if has("st"):
        rest += ["dt = (ts - b) / 1000.0", f"{d('st')} += dt", f"{d('stt')} += dt * dt", f"{d('sty')} += dt * x"]
    return [*out, "    if n == 0:", *["        " + line for line in first], "    else:",
            *["        " + line for line in rest]]


def compile_plan(view: FeatureView, *, compiled: bool | None = None) -> Plan:
    """Compile ``view`` (use :func:`plan_for`, which caches): the bucket row layout, ``apply`` and one pass over
    the buckets for all windows. ``compiled``: run ``apply`` and ``fold`` in the C kernel when it can
    (:mod:`features.kernel`; ``None``: unless ``DRIFTLINE_PURE_PYTHON=1``), else the generated Python.

    Every window ends at the bucket of now, so one walk in time order from the earliest window start
    serves them all; each (window, field) group merges a bucket only from its own window start on, so
    every group sees the same left fold as on its own.
    """
    angle = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_angle}
    distinct = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_distinct}
    fields = tuple((f.name, f.type == "str", f.name in angle, f.name in distinct) for f in view.fields)
    windows: list[Window] = []
    groups: dict[tuple[int, str], list[tuple[str, str]]] = {}  # (window index, field) -> [(name, agg)]
    for feat in view.features:
        if feat.window not in windows:
            windows.append(feat.window)
        groups.setdefault((windows.index(feat.window), feat.field), []).append((feat.name, feat.agg))
    group_slots = {key: _closure(set().union(*(_NEEDS[agg] for _, agg in feats))) for key, feats in groups.items()}
    # the row layout: per field (view order) the partial slots some group of it reads, in slot order
    layout: list[tuple[str, dict[str, int]]] = []
    width = 0
    for fname, _is_str, _angle, _distinct in fields:
        used = set().union(*(slots for (_, f), slots in group_slots.items() if f == fname))
        if not used:
            continue
        keep = [slot for slot in SLOTS if slot in _stored(used)]
        layout.append((fname, {slot: width + i for i, slot in enumerate(keep)}))
        width += len(keep)
    offsets = dict(layout)
    distinct_index = tuple((i, name) for i, (name, *_rest) in enumerate(layout) if name in distinct)
    apply_src = ["def apply(data, base, b, ts, values):"]
    for fname, is_str, is_angle, _d in fields:
        if fname in offsets:
            apply_src += ["    " + line for line in _apply_lines(fname, offsets[fname], is_str, is_angle)]
    apply_src.append("    return None")
    if not view.features:
        ns: dict[str, Any] = dict(_NAMESPACE)
        exec(compile("\n".join(apply_src) + "\n", f"<features.plan {view.name}>", "exec"), ns)  # noqa: S102
        return Plan(view.bucket_ms, (), fields, (), _nothing, _nothing, lambda acc: {}, "", (), 0, ns["apply"],
                    ())
    locals_: list[str] = []
    init: list[str] = []
    results: list[str] = []
    by_field: dict[str, list[tuple[int, dict[str, str], set[str]]]] = {}
    for gi, ((wi, field), _feats) in enumerate(groups.items()):
        slots = group_slots[(wi, field)]
        v = {slot: f"g{gi}_{slot}" for slot in _ORDER}
        locals_ += [v[s] for s in _ORDER if s in slots]
        init += [f"{v[s]} = {_INIT[s]}" for s in _ORDER if s in slots]
        by_field.setdefault(field, []).append((wi, v, slots))
    emits: list[tuple[str, str, dict[str, str], set[str]]] = []
    for feat in view.features:  # results in definition order
        wi = windows.index(feat.window)
        v = {slot: f"g{list(groups).index((wi, feat.field))}_{slot}" for slot in _ORDER}
        results.append(f"{feat.name!r}: {_RESULT[feat.agg].format(**v)},")
        emits.append((feat.name, feat.agg, v, group_slots[(wi, feat.field)]))
    head: list[str] = []
    body: list[str] = []
    for fi, (field, uses) in enumerate(by_field.items()):
        wis = sorted({wi for wi, _, _ in uses})
        off = offsets[field]
        ds_index = next((i for i, name in distinct_index if name == field), None)
        head.append(
            f"f{fi} = {'min(' + ', '.join(f'o{w}' for w in wis) + ')' if len(wis) > 1 else f'o{wis[0]}'}"
        )
        body += [
            f"if b >= f{fi}:",
            f"    nb = data[base + {off['n']}]",
            "    if nb:",
        ]
        ds = f"sets.get(b, NO_SETS).get({ds_index})" if ds_index is not None and sets_used(uses) else "None"
        for wi, v, slots in uses:
            merge = _merge_lines(v, slots, field in angle, lambda k, off=off: f"data[base + {off[SLOTS[k]]}]", ds)
            if "st" in slots:
                merge.insert(0, f"d = (b - o{wi}) / 1000.0")
            if len(wis) > 1:
                body += [f"        if b >= o{wi}:", *["            " + line for line in merge]]
            else:
                body += ["        " + line for line in merge]
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
        "def fold(acc, data, order, lo, hi, origins, sets):",
        f"    ({origins}) = origins",
        *["    " + line for line in head],
        "    if acc is None:",
        *["        " + line for line in init],
        "    else:",
        f"        ({tup}) = acc",
        *[f"        {n} = set({n})" for n in locals_ if n.endswith("_ds")],
        "    for j in range(lo, hi):",
        "        b = order[j]",
        f"        base = j * {width}",
        *["        " + line for line in body],
        f"    return ({tup})",
        "",
        "def emit(acc):",
        f"    ({tup}) = acc",
        "    return {",
        *["        " + line for line in results],
        "    }",
        "",
        *apply_src,
    ]
    source = "\n".join(src) + "\n"
    ns = dict(_NAMESPACE, **{f"W{wi}": w for wi, w in enumerate(windows)})
    exec(compile(source, f"<features.plan {view.name} v{view.version}>", "exec"), ns)  # noqa: S102 - own template
    kernel = None
    if wanted() if compiled is None else compiled:
        init = {name: _INIT[name.rsplit("_", 1)[1]] for name in locals_}
        kernel = compiled_kernel(width, len(windows), locals_, init, by_field, offsets,
                                 [(f, s, a) for f, s, a, _d in fields if f in offsets], angle, EWMA_ALPHA,
                                 ns["apply"], emits, ns["emit"],
                                 view.bucket_ms if all(w.kind == "sliding" for w in windows) else 0)
    return Plan(
        view.bucket_ms,
        view.feature_names,
        fields,
        tuple(windows),
        ns["starts"],
        ns["fold"] if kernel is None else kernel.fold,
        ns["emit"] if kernel is None else kernel.emit,
        source,
        tuple((name, tuple(off.items())) for name, off in layout),
        width,
        ns["apply"] if kernel is None else kernel.apply,
        distinct_index,
        kernel is not None,
        None if kernel is None else kernel.step,
        None if kernel is None else kernel.pack,
    )


def sets_used(uses: list[tuple[int, dict[str, str], set[str]]]) -> bool:
    """Whether any group of a field folds distinct values."""
    return any("ds" in slots for _, _, slots in uses)


#: the compiled (cached) evaluation plan of a view
plan_for: Callable[[FeatureView], Plan] = per_view(compile_plan)
