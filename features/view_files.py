"""Feature views declared in a file (TOML, YAML or JSON), mapped onto :class:`FeatureView`; and back.

A view file is a plain mapping. Top level: ``name`` (required), ``version`` (1), ``source_topic`` (the
name), ``entity_key`` (required), ``bucket`` ("10s"), ``allowed_lateness`` ("1m"), ``max_future`` ("5m"),
``unknown_fields`` (``ignore`` | ``reject``), ``missing_fields`` (``reject`` | ``allow``: the default of
each field's ``required``). Tables: ``timestamp`` (``field`` = "ts", ``format`` = "auto", see
``features.timestamps``), ``fields`` (name → ``type`` float|int|str, ``min``, ``max``, ``required``),
``windows`` (name → ``kind`` sliding|tumbling|hopping, ``length``, ``step`` for hopping), and a list
``features``: each has ``field``, ``window`` (a name from ``windows``, a duration for a sliding window, or
an inline table) and either ``agg`` (+ optional ``name``) or ``aggs`` (a list; names are
``<field>_<agg>_<window>``). Durations are ``<int><ms|s|m|h|d>``. Allowed lateness is per view: every window
of a view is made of the same buckets.

Errors name the file, the key path, the line where it can be found, and what is allowed:

Example:
    >>> text = '''
    ... name = "pay"
    ... entity_key = "card"
    ... [fields]
    ... amount = { type = "float", min = 0 }
    ... [[features]]
    ... field = "amount"
    ... aggs = ["mean", "max"]
    ... window = "5m"
    ... '''
    >>> view = loads_view(text, "toml")
    >>> view.feature_names, view.source_topic, view.fields[0].required
    (('amount_mean_5m', 'amount_max_5m'), 'pay', True)
    >>> loads_view(dumps_view(view), "toml") == view
    True
    >>> loads_view(text.replace('"5m"', '"5 weeks"'), "toml", source="pay.toml")
    Traceback (most recent call last):
    ...
    features.exceptions.ViewFileError: pay.toml, line 9, features[0].window: bad duration '5 weeks': use <int><ms|s|m|h|d>, e.g. '5m'
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from features.aggregations import AGGREGATIONS
from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window, parse_duration
from features.exceptions import DefinitionError, ViewFileError
from features.timestamps import check_ts_format

FILE_SUFFIXES: dict[str, str] = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
TOP_KEYS = ("name", "version", "source_topic", "entity_key", "bucket", "allowed_lateness", "max_future",
            "unknown_fields", "missing_fields", "description", "timestamp", "fields", "windows", "features")
FIELD_KEYS = ("type", "min", "max", "required", "description")
WINDOW_KEYS = ("kind", "length", "step")
FEATURE_KEYS = ("name", "field", "agg", "aggs", "window", "description")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
Path_ = tuple[str | int, ...]


class _Ctx:
    """Where we are in the file, to put the file name, line and key path into every error."""

    def __init__(self, source: str, locate: Callable[[Path_], int | None]) -> None:
        self.source, self.locate = source, locate

    def fail(self, path: Path_, message: str) -> ViewFileError:
        line = self.locate(path) if path else None
        where = ", ".join(p for p in (self.source, f"line {line}" if line else "", _dotted(path)) if p)
        return ViewFileError(f"{where}: {message}", source=self.source, line=line, key=_dotted(path))


def _dotted(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _only(ctx: _Ctx, path: Path_, data: Any, allowed: Sequence[str], what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ctx.fail(path, f"{what} must be a table/mapping, got {type(data).__name__}")
    extra = [k for k in data if k not in allowed]
    if extra:
        raise ctx.fail((*path, extra[0]), f"unknown key {extra[0]!r} in {what}; allowed: {', '.join(allowed)}")
    return data


def _get(ctx: _Ctx, path: Path_, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
         default: Any = ..., allowed: Sequence[str] = ()) -> Any:
    if key not in data:
        if default is ...:
            raise ctx.fail((*path, key), f"missing required key {key!r}")
        return default
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = " or ".join(t.__name__ for t in _as_tuple(kind))
        raise ctx.fail((*path, key), f"must be {names}, got {type(value).__name__} {value!r}")
    if allowed and value not in allowed:
        raise ctx.fail((*path, key), f"{value!r} is not allowed; use one of: {', '.join(allowed)}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _duration(ctx: _Ctx, path: Path_, raw: Any) -> int:
    try:
        return parse_duration(raw)
    except DefinitionError as exc:
        raise ctx.fail(path, str(exc)) from None


def _number_or_none(ctx: _Ctx, path: Path_, data: Mapping[str, Any], key: str) -> float | None:
    value = _get(ctx, path, data, key, (int, float), None)
    return None if value is None else value


def _window(ctx: _Ctx, path: Path_, raw: Any, named: Mapping[str, Window]) -> tuple[Window, str]:
    """A window and its label (for generated feature names) from a name, a duration or an inline table."""
    if isinstance(raw, str) and raw in named:
        return named[raw], raw
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        ms = _duration(ctx, path, raw)
        return _make_window(ctx, path, "sliding", ms, None), raw if isinstance(raw, str) else f"{raw}ms"
    data = _only(ctx, path, raw, (*WINDOW_KEYS, "allowed_lateness"), "a window")
    if "allowed_lateness" in data:
        raise ctx.fail((*path, "allowed_lateness"), "allowed lateness is set once per view (top-level "
                       "'allowed_lateness'): all windows of a view share its buckets")
    kind = _get(ctx, path, data, "kind", str, "sliding", allowed=("sliding", "tumbling", "hopping"))
    length = _duration(ctx, (*path, "length"), _get(ctx, path, data, "length", (str, int)))
    step = None
    if "step" in data:
        step = _duration(ctx, (*path, "step"), _get(ctx, path, data, "step", (str, int)))
    elif kind == "hopping":
        raise ctx.fail(path, "a hopping window needs 'step' (how often a window starts), e.g. step = \"1m\"")
    label = str(data["length"]) if kind == "sliding" else f"{kind}_{data['length']}"
    return _make_window(ctx, path, kind, length, step), label


def _make_window(ctx: _Ctx, path: Path_, kind: str, length: int, step: int | None) -> Window:
    try:
        return Window(kind, length, step)  # type: ignore[arg-type]
    except DefinitionError as exc:
        raise ctx.fail(path, str(exc)) from None


def view_from_dict(data: Any, *, source: str = "<view>",
                   locate: Callable[[Path_], int | None] = lambda _p: None) -> FeatureView:
    """Build a :class:`FeatureView` from a parsed view file; raise :class:`ViewFileError` naming what is wrong."""
    ctx = _Ctx(source, locate)
    top = _only(ctx, (), data, TOP_KEYS, "the view")
    name = _get(ctx, (), top, "name", str)
    if not _NAME.match(name):
        raise ctx.fail(("name",), f"{name!r}: use letters, digits, '_', '-', '.' (at most 128, not first)")
    ts = _only(ctx, ("timestamp",), top.get("timestamp", {}), ("field", "format"), "timestamp")
    ts_field = _get(ctx, ("timestamp",), ts, "field", str, "ts")
    ts_format = _get(ctx, ("timestamp",), ts, "format", str, "auto")
    try:
        check_ts_format(ts_format)
    except DefinitionError as exc:
        raise ctx.fail(("timestamp", "format"), str(exc)) from None
    missing = _get(ctx, (), top, "missing_fields", str, "reject", allowed=("reject", "allow"))
    fields = []
    for fname, spec in _mapping(ctx, ("fields",), top.get("fields", {}), "fields").items():
        path = ("fields", fname)
        spec = _only(ctx, path, spec, FIELD_KEYS, f"field {fname!r}")
        ftype = _get(ctx, path, spec, "type", str, "float", allowed=("float", "int", "str"))
        try:
            fields.append(FieldSpec(fname, ftype, _get(ctx, path, spec, "required", bool, missing == "reject"),
                                    _number_or_none(ctx, path, spec, "min"), _number_or_none(ctx, path, spec, "max")))
        except DefinitionError as exc:
            raise ctx.fail(path, str(exc)) from None
    named = {}
    for wname, spec in _mapping(ctx, ("windows",), top.get("windows", {}), "windows").items():
        named[wname] = _window(ctx, ("windows", wname), spec, {})[0]
    features: list[FeatureSpec] = []
    raw_features = _get(ctx, (), top, "features", list, [])
    field_types = {f.name: f.type for f in fields}
    field_names = set(field_types)
    bucket_ms = _duration(ctx, ("bucket",), top.get("bucket", "10s"))
    if bucket_ms <= 0:
        raise ctx.fail(("bucket",), "the bucket must be longer than 0 (e.g. \"10s\")")
    for i, spec in enumerate(raw_features):
        path: Path_ = ("features", i)
        spec = _only(ctx, path, spec, FEATURE_KEYS, "a feature")
        fname = _get(ctx, path, spec, "field", str)
        if fname not in field_names:
            raise ctx.fail((*path, "field"), f"unknown field {fname!r}; declared fields: "
                           f"{', '.join(sorted(field_names)) or '(none: add a [fields] table)'}")
        window, label = _window(ctx, (*path, "window"), _get(ctx, path, spec, "window", (str, int, dict)), named)
        if window.size_ms % bucket_ms or (window.step_ms or 0) % bucket_ms:
            raise ctx.fail((*path, "window"), f"window length {_duration_text(window.size_ms)}"
                           f"{f' / step {_duration_text(window.step_ms)}' if window.step_ms else ''} must be "
                           f"a whole number of the view's buckets ({_duration_text(bucket_ms)}); change "
                           "the window or the top-level 'bucket'")
        if ("agg" in spec) == ("aggs" in spec):
            raise ctx.fail(path, "give either 'agg' (one aggregation) or 'aggs' (a list of them)")
        aggs = [_get(ctx, path, spec, "agg", str)] if "agg" in spec else _get(ctx, path, spec, "aggs", list)
        if "aggs" in spec and "name" in spec:
            raise ctx.fail((*path, "name"), "'name' goes with 'agg'; with 'aggs' names are <field>_<agg>_<window>")
        explicit_name = _get(ctx, path, spec, "name", str, None)
        for agg in aggs:
            if not isinstance(agg, str) or agg not in AGGREGATIONS:
                raise ctx.fail((*path, "agg" if "agg" in spec else "aggs"),
                               f"unknown aggregation {agg!r}; known: {', '.join(sorted(AGGREGATIONS))}")
            if field_types[fname] == "str" and AGGREGATIONS[agg].numeric_only:
                raise ctx.fail((*path, "agg" if "agg" in spec else "aggs"),
                               f"{agg} needs a numeric field; {fname!r} is a str (use count, distinct_count, "
                               "first or last)")
            feature_name = explicit_name or f"{fname}_{agg}_{label}"
            if feature_name in {f.name for f in features}:
                raise ctx.fail((*path, "name" if "name" in spec else "aggs"),
                               f"duplicate feature name {feature_name!r}: give each feature its own name")
            features.append(FeatureSpec(feature_name, fname, agg, window))
    args: dict[str, Any] = dict(
        name=name, version=_get(ctx, (), top, "version", int, 1),
        source_topic=_get(ctx, (), top, "source_topic", str, name),
        entity_key=_get(ctx, (), top, "entity_key", str), ts_field=ts_field, fields=tuple(fields),
        features=tuple(features), bucket_ms=bucket_ms,
        allowed_lateness_ms=_duration(ctx, ("allowed_lateness",), top.get("allowed_lateness", "1m")),
        unknown_fields=_get(ctx, (), top, "unknown_fields", str, "ignore", allowed=("ignore", "reject")),
        max_future_ms=_duration(ctx, ("max_future",), top.get("max_future", "5m")), ts_format=ts_format)
    try:
        return FeatureView(**args)
    except DefinitionError as exc:
        raise ctx.fail(_blame(str(exc)), str(exc)) from None


def _mapping(ctx: _Ctx, path: Path_, data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ctx.fail(path, f"{what} must be a table/mapping, got {type(data).__name__}")
    return data


def _blame(message: str) -> Path_:
    """The key a FeatureView-level error is about (best effort, for the line number)."""
    if "entity_key" in message:
        return ("entity_key",)
    if "lateness" in message or "max_future" in message:
        return ("allowed_lateness",)
    return ("fields",) if "field" in message else ()


# --- parsing and locating --------------------------------------------------------------------------------


def _toml_locator(text: str) -> Callable[[Path_], int | None]:
    """Line of a key path in TOML text: finds the table header, then the key after it (best effort)."""
    lines = text.splitlines()

    def locate(path: Path_) -> int | None:
        start, i = 0, 0
        # walk down the path: [[features]] occurrence n, [fields] / [fields.x], or key = ... lines
        while i < len(path):
            part = path[i]
            nxt = path[i + 1] if i + 1 < len(path) else None
            if isinstance(nxt, int):
                hits = [n for n, ln in enumerate(lines) if re.match(rf"^\s*\[\[\s*{re.escape(str(part))}\s*\]\]", ln)]
                if len(hits) > nxt:
                    start, i = hits[nxt], i + 2
                    continue
                return _key_line(lines, start, str(part))
            header = [n for n, ln in enumerate(lines) if n >= start and
                      re.match(rf"^\s*\[\s*{re.escape('.'.join(map(str, path[:i + 1])))}\s*\]", ln)]
            if header:
                start = header[0]
            else:
                found = _key_line(lines, start, str(part))
                if found is None:
                    return start + 1 if start else None
                start = found - 1
            i += 1
        return start + 1

    return locate


def _key_line(lines: list[str], start: int, key: str) -> int | None:
    pat = re.compile(rf"(^|[\s{{,]){re.escape(key)}\s*=|^\s*\"{re.escape(key)}\"\s*=")
    for n in range(start, len(lines)):
        if n > start and lines[n].lstrip().startswith("[") and not lines[n].lstrip().startswith("[["):
            if not re.match(r"^\s*\[\s*[A-Za-z_]", lines[n]):
                continue
            return None
        if pat.search(lines[n]):
            return n + 1
    return None


def _yaml_load(text: str, source: str) -> tuple[Any, Callable[[Path_], int | None]]:
    try:
        import yaml
    except ImportError:
        raise ViewFileError(f"{source}: YAML view files need PyYAML (pip install pyyaml), or use TOML",
                            source=source) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ViewFileError(f"{source}{f', line {line}' if line else ''}: not valid YAML: "
                            f"{getattr(exc, 'problem', None) or exc}", source=source, line=line) from None
    lines: dict[Path_, int] = {}

    def walk(n: Any, path: Path_) -> None:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                lines[(*path, k.value)] = k.start_mark.line + 1
                walk(v, (*path, k.value))
                lines[(*path, k.value)] = k.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, (*path, i))

    if node is not None:
        walk(node, ())

    def locate(path: Path_) -> int | None:
        for cut in range(len(path), 0, -1):
            if path[:cut] in lines:
                return lines[path[:cut]]
        return None

    return data, locate


def _nowhere(_path: Path_) -> int | None:
    return None


def loads_view(text: str, fmt: str, *, source: str = "<view>") -> FeatureView:
    """Parse view text of format ``toml``, ``yaml`` or ``json``."""
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            line = int(m.group(1)) if m else None
            raise ViewFileError(f"{source}{f', line {line}' if line else ''}: not valid TOML: {exc}",
                                source=source, line=line) from None
        locate = _toml_locator(text)
    elif fmt == "yaml":
        data, locate = _yaml_load(text, source)
    elif fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ViewFileError(f"{source}, line {exc.lineno}: not valid JSON: {exc.msg}",
                                source=source, line=exc.lineno) from None
        locate = _nowhere
    else:
        raise ViewFileError(f"{source}: unknown view file format {fmt!r}; use toml, yaml or json", source=source)
    return view_from_dict(data, source=source, locate=locate)


def load_view_file(path: str | Path) -> FeatureView:
    """Read a view file; the format comes from the suffix (.toml, .yaml/.yml, .json)."""
    p = Path(path)
    fmt = FILE_SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise ViewFileError(f"{p}: a view file ends in {', '.join(FILE_SUFFIXES)}", source=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ViewFileError(f"{p}: cannot read view file: {exc}", source=str(p)) from None
    return loads_view(text, fmt, source=str(p))


# --- writing ---------------------------------------------------------------------------------------------


def _duration_text(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else ("nan" if value != value else
                                                                                ("inf" if value > 0 else "-inf"))
    return _toml_str(str(value))


def _toml_str(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(name: str) -> str:
    return name if re.match(r"^[A-Za-z0-9_-]+$", name) else _toml_str(name)


def view_to_dict(view: FeatureView) -> dict[str, Any]:
    """The explicit file form of ``view`` (every feature on its own, windows inline)."""
    def window(w: Window) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": w.kind, "length": _duration_text(w.size_ms)}
        if w.step_ms is not None:
            out["step"] = _duration_text(w.step_ms)
        return out

    def field(f: FieldSpec) -> dict[str, Any]:
        out: dict[str, Any] = {"type": f.type, "required": f.required}
        out.update({k: v for k, v in (("min", f.min), ("max", f.max)) if v is not None})
        return out

    return {
        "name": view.name, "version": view.version, "source_topic": view.source_topic,
        "entity_key": view.entity_key, "bucket": _duration_text(view.bucket_ms),
        "allowed_lateness": _duration_text(view.allowed_lateness_ms),
        "max_future": _duration_text(view.max_future_ms), "unknown_fields": view.unknown_fields,
        "timestamp": {"field": view.ts_field, "format": view.ts_format},
        "fields": {f.name: field(f) for f in view.fields},
        "features": [{"name": s.name, "field": s.field, "agg": s.agg, "window": window(s.window)}
                     for s in view.features],
    }


def dumps_view(view: FeatureView) -> str:
    """TOML text that :func:`loads_view` reads back into an equal view."""
    data = view_to_dict(view)
    out = [f"{k} = {_toml_value(data[k])}" for k in ("name", "version", "source_topic", "entity_key", "bucket",
                                                     "allowed_lateness", "max_future", "unknown_fields")]
    out += ["", "[timestamp]", f"field = {_toml_value(view.ts_field)}", f"format = {_toml_value(view.ts_format)}",
            "", "[fields]"]
    for name, spec in data["fields"].items():
        out.append(f"{_key(name)} = {{ {', '.join(f'{k} = {_toml_value(v)}' for k, v in spec.items())} }}")
    for feat in data["features"]:
        win = ", ".join(f"{k} = {_toml_value(v)}" for k, v in feat["window"].items())
        out += ["", "[[features]]", f"name = {_toml_value(feat['name'])}", f"field = {_toml_value(feat['field'])}",
                f"agg = {_toml_value(feat['agg'])}", f"window = {{ {win} }}"]
    return "\n".join(out) + "\n"
