"""View files: round trips (TOML, YAML, JSON), the promised error messages, module:ATTRIBUTE, the catalog."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from features.aggregations import AGGREGATIONS
from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.exceptions import ViewFileError
from features.view_catalog import ViewCatalog
from features.view_files import _toml_str, dumps_view, load_view_file, loads_view, view_to_dict
from features.views import GPS_VIEW, VIEWS, VITALS_VIEW
from streams.settings import Settings

GOOD = """\
name = "payments"
entity_key = "card_id"
bucket = "10s"
allowed_lateness = "2m"
unknown_fields = "reject"

[timestamp]
field = "ts"
format = "epoch_s"

[fields]
amount = { type = "float", min = 0, max = 50000 }
country = { type = "str", required = false }

[windows]
w5 = { kind = "sliding", length = "5m" }

[[features]]
field = "amount"
aggs = ["mean", "max"]
window = "w5"

[[features]]
name = "amount_sum_1h"
field = "amount"
agg = "sum"
window = { kind = "hopping", length = "1h", step = "10m" }

[[features]]
name = "countries_1h"
field = "country"
agg = "distinct_count"
window = { kind = "tumbling", length = "1h" }
"""


def test_good_file_maps_onto_feature_view(tmp_path: Path) -> None:
    path = tmp_path / "payments.toml"
    path.write_text(GOOD)
    view = load_view_file(path)
    assert view == FeatureView(
        "payments", 1, "payments", "card_id", "ts",
        (FieldSpec("amount", "float", True, 0, 50000), FieldSpec("country", "str", False)),
        (FeatureSpec("amount_mean_w5", "amount", "mean", Window("sliding", 300_000)),
         FeatureSpec("amount_max_w5", "amount", "max", Window("sliding", 300_000)),
         FeatureSpec("amount_sum_1h", "amount", "sum", Window("hopping", 3_600_000, 600_000)),
         FeatureSpec("countries_1h", "country", "distinct_count", Window("tumbling", 3_600_000))),
        bucket_ms=10_000, allowed_lateness_ms=120_000, unknown_fields="reject", ts_format="epoch_s")


@pytest.mark.parametrize("view", list(VIEWS.values()), ids=list(VIEWS))
def test_builtin_views_round_trip_in_every_format(view: FeatureView) -> None:
    assert loads_view(dumps_view(view), "toml") == view
    assert loads_view(yaml.safe_dump(view_to_dict(view), sort_keys=False), "yaml") == view
    assert loads_view(json.dumps(view_to_dict(view)), "json") == view


def test_default_ts_format_keeps_the_fingerprints() -> None:
    """Adding ts_format must not move the Redis keys of views that existed before it (state stays readable)."""
    assert VITALS_VIEW.fingerprint() == "417259efa40e"
    assert GPS_VIEW.fingerprint() == "ea332c0ed96f"


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_durations = st.sampled_from([10_000, 20_000, 60_000, 300_000, 3_600_000, 86_400_000])


@st.composite
def views(draw: st.DrawFn) -> FeatureView:
    bucket = draw(st.sampled_from([1_000, 5_000, 10_000]))
    names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    fields = []
    for n in names:
        kind = draw(st.sampled_from(["float", "int", "str"]))
        lo = draw(st.none() | st.integers(-1000, 0) | st.floats(-1e6, 0, allow_nan=False))
        hi = draw(st.none() | st.integers(1, 1000) | st.floats(1, 1e6, allow_nan=False))
        fields.append(FieldSpec(n, kind, draw(st.booleans()), *((lo, hi) if kind != "str" else (None, None))))
    feats = []
    for i in range(draw(st.integers(0, 5))):
        f = draw(st.sampled_from(fields))
        aggs = [a for a, spec in AGGREGATIONS.items() if f.type != "str" or not spec.numeric_only]
        kind = draw(st.sampled_from(["sliding", "tumbling", "hopping"]))
        size = draw(_durations)
        step = draw(st.sampled_from([s for s in (10_000, 20_000, 60_000) if s <= size])) if kind == "hopping" else None
        feats.append(FeatureSpec(f"{f.name}_{i}", f.name, draw(st.sampled_from(aggs)), Window(kind, size, step)))
    fmt = draw(st.sampled_from(["auto", "epoch_ms", "epoch_s", "rfc3339", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y"]))
    return FeatureView(draw(_names), draw(st.integers(1, 50)), draw(_names), "key_", "time_", tuple(fields),
                       tuple(feats), bucket_ms=bucket, allowed_lateness_ms=draw(st.sampled_from([0, 30_000, 3_600_000])),
                       unknown_fields=draw(st.sampled_from(["ignore", "reject"])),
                       max_future_ms=draw(st.sampled_from([0, 1_000, 300_000])), ts_format=fmt)


@settings(max_examples=150, deadline=None)
@given(views())
def test_any_view_round_trips(view: FeatureView) -> None:
    assert loads_view(dumps_view(view), "toml") == view
    assert loads_view(yaml.safe_dump(view_to_dict(view), sort_keys=False), "yaml") == view


# (what to change in GOOD, key path in the message, the line it is on, words that say what is allowed)
BAD = [
    ('format = "epoch_s"', 'format = "unix"', "timestamp.format", 9, "epoch_ms, epoch_s, rfc3339"),
    ('type = "float"', 'type = "double"', "fields.amount.type", 12, "float, int, str"),
    ('aggs = ["mean", "max"]', 'aggs = ["mean", "median"]', "features[0].aggs", 20, "known: angle_change_rate"),
    ('step = "10m"', 'step = "7s"', "features[1].window", 27, "whole number of the view's buckets"),
    ('field = "amount"\naggs', 'field = "amnt"\naggs', "features[0].field", 19, "declared fields: amount, country"),
    ('bucket = "10s"', 'bucket = "10 sec"', "bucket", 3, "<int><ms|s|m|h|d>"),
    ('unknown_fields = "reject"', 'unknown_fields = "drop"', "unknown_fields", 5, "ignore, reject"),
    ('entity_key = "card_id"', 'entity_key = "card_id"\nentity = "x"', "entity", 3, "allowed: name, version"),
    ("min = 0, max = 50000", "min = 5, max = 1", "fields.amount", 12, "min 5 > max 1"),
    ('length = "1h", step', 'length = "1h", allowed_lateness = "5m", step',
     "features[1].window.allowed_lateness", 27, "once per view"),
    ('agg = "distinct_count"', 'agg = "mean"', "features[2].agg", 32, "needs a numeric field"),
    ('name = "amount_sum_1h"', 'name = "amount_mean_w5"', "features[1].name", 24, "duplicate feature name"),
    ('window = { kind = "tumbling", length = "1h" }', 'window = { kind = "hopping", length = "1h" }',
     "features[2].window", 33, "needs 'step'"),
]


@pytest.mark.parametrize(("old", "new", "key", "line", "allowed"), BAD, ids=[b[2] for b in BAD])
def test_bad_files_name_file_line_key_and_what_is_allowed(tmp_path: Path, old: str, new: str, key: str, line: int,
                                                         allowed: str) -> None:
    assert old in GOOD
    path = tmp_path / "payments.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ViewFileError) as info:
        load_view_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}, line {line}, {key}: "), msg
    assert allowed in msg, msg
    assert (info.value.source, info.value.line, info.value.key) == (str(path), line, key)


def test_syntax_errors_name_the_line(tmp_path: Path) -> None:
    toml_file, yaml_file, json_file = tmp_path / "v.toml", tmp_path / "v.yaml", tmp_path / "v.json"
    toml_file.write_text(GOOD.replace("[windows]", "[windows"))
    yaml_file.write_text("name: x\nentity_key: [a\n")
    json_file.write_text('{"name": "x",\n "entity_key": }')
    for path, line in ((toml_file, 15), (yaml_file, 3), (json_file, 2)):
        with pytest.raises(ViewFileError, match=rf"^{re.escape(str(path))}, line {line}: not valid"):
            load_view_file(path)


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "v.yml"
    path.write_text("name: pay\nentity_key: card\nfields:\n  amount:\n    type: float\nfeatures:\n"
                    "  - field: amount\n    agg: mean\n    window: 5m\n  - field: amount\n    agg: median\n"
                    "    window: 5m\n")
    with pytest.raises(ViewFileError, match=r"v.yml, line 11, features\[1\].agg: unknown aggregation 'median'"):
        load_view_file(path)


def test_missing_required_key_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(ViewFileError, match=r"^<view>, entity_key: missing required key 'entity_key'"):
        loads_view('name = "x"', "toml")
    with pytest.raises(ViewFileError, match="the view must be a table/mapping, got list"):
        loads_view("- 1\n- 2\n", "yaml")
    with pytest.raises(ViewFileError, match=r"a view file ends in \.toml, \.yaml, \.yml, \.json"):
        load_view_file(tmp_path / "view.txt")
    with pytest.raises(ViewFileError, match="cannot read view file"):
        load_view_file(tmp_path / "missing.toml")


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(
    lambda k: k not in ("name", "version", "source_topic", "entity_key", "bucket", "allowed_lateness", "max_future",
                        "unknown_fields", "missing_fields", "description", "timestamp", "fields", "windows",
                        "features")))
def test_any_unknown_top_level_key_is_named_with_the_allowed_ones(key: str) -> None:
    text = GOOD.replace('bucket = "10s"', f'bucket = "10s"\n{key} = 1')
    with pytest.raises(ViewFileError) as info:
        loads_view(text, "toml", source="p.toml")
    assert str(info.value).startswith(f"p.toml, line 4, {key}: unknown key {key!r} in the view; allowed: name,")


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=8).filter(lambda t: not re.match(r"^\s*\d+\s*(ms|s|m|h|d)\s*$", t)))
def test_any_bad_duration_is_refused_with_the_syntax(text: str) -> None:
    doc = GOOD.replace('length = "1h", step', f"length = {_toml_str(text)}, step")
    with pytest.raises(ViewFileError) as info:
        loads_view(doc, "toml", source="p.toml")
    assert "features[1].window.length" in str(info.value) and "<int><ms|s|m|h|d>" in str(info.value)


def test_module_attribute_views() -> None:
    catalog = ViewCatalog()
    assert catalog.resolve("features.views:GPS_VIEW") is GPS_VIEW
    with pytest.raises(ViewFileError, match="has no attribute 'NOPE'"):
        catalog.resolve("features.views:NOPE")
    with pytest.raises(ViewFileError, match="is a dict, not a features.definitions.FeatureView"):
        catalog.resolve("features.views:VIEWS")
    with pytest.raises(ViewFileError, match="cannot import module 'no_such_module_x'"):
        catalog.resolve("no_such_module_x:VIEW")


def test_config_views_are_found_by_name_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "views").mkdir()
    (tmp_path / "views" / "payments.toml").write_text(GOOD)
    config = tmp_path / "driftline.toml"
    config.write_text('views = ["views/payments.toml", "features.views:GPS_VIEW"]\n')
    s = Settings.from_env({}, config)
    assert s.views == (str(tmp_path / "views" / "payments.toml"), "features.views:GPS_VIEW")
    catalog = ViewCatalog(s.views)
    assert catalog.names() == ["gps", "payments", "vitals"]
    assert catalog.resolve("payments").ts_format == "epoch_s"
    env = Settings.from_env({"DRIFTLINE_VIEWS": f"{tmp_path / 'views' / 'payments.toml'}"})
    assert ViewCatalog(env.views).resolve("payments").name == "payments"


def test_two_views_of_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "b.toml").write_text(GOOD.replace("version", "x").replace('bucket = "10s"', 'bucket = "5s"'))
    with pytest.raises(ViewFileError, match=r"b.toml: view name 'payments' is already taken by .*a.toml"):
        ViewCatalog([str(tmp_path / "a.toml"), str(tmp_path / "b.toml")])
