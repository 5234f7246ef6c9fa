"""Declarative feature definitions: fields, windows, features and the feature view that binds them.

A :class:`FeatureView` says where events come from (source topic, entity key, timestamp field), which
fields they carry (:class:`FieldSpec`, with type and range) and which features to compute
(:class:`FeatureSpec`: field x aggregation x :class:`Window`). State is kept in buckets of
``bucket_ms``; every window is made of whole buckets, so sizes and steps must be multiples of it.

Example:
    >>> view = FeatureView(
    ...     name="demo", version=1, source_topic="demo", entity_key="id", ts_field="ts",
    ...     fields=(FieldSpec("x", min=0, max=10),),
    ...     features=(FeatureSpec("x_mean_1m", "x", "mean", Window("sliding", parse_duration("1m"))),),
    ... )
    >>> view.feature_names, view.retention_ms, len(view.fingerprint())
    (('x_mean_1m',), 120000, 12)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Literal

import orjson

from features.aggregations import AGGREGATIONS
from features.exceptions import DefinitionError
from features.timestamps import check_ts_format

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str | int) -> int:
    """Parse ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"``, ``"1d"`` into milliseconds; ints pass through.

    >>> parse_duration("500ms"), parse_duration("10s"), parse_duration("5m"), parse_duration(42)
    (500, 10000, 300000, 42)
    >>> parse_duration("5 weeks")
    Traceback (most recent call last):
    ...
    features.exceptions.DefinitionError: bad duration '5 weeks': use <int><ms|s|m|h|d>, e.g. '5m'
    """
    if isinstance(text, bool):
        raise DefinitionError(f"bad duration {text!r}: use <int><ms|s|m|h|d>, e.g. '5m'")
    if isinstance(text, int):
        if text < 0:
            raise DefinitionError(f"bad duration {text!r}: must be >= 0")
        return text
    m = _DURATION.match(text) if isinstance(text, str) else None
    if m is None:
        raise DefinitionError(f"bad duration {text!r}: use <int><ms|s|m|h|d>, e.g. '5m'")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class FieldSpec:
    """One measurement carried by the source events, with its type and allowed range (inclusive)."""

    name: str
    type: Literal["float", "int", "str"] = "float"
    required: bool = True
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.type not in ("float", "int", "str"):
            raise DefinitionError(f"field {self.name!r}: type must be float, int or str, not {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise DefinitionError(f"field {self.name!r}: min {self.min} > max {self.max}")


@dataclass(frozen=True)
class Window:
    """A window over event time, evaluated at ``now`` (the scored event's timestamp).

    * ``sliding``: the last ``size_ms`` up to now (whole buckets: the bucket of now and the ones before);
    * ``tumbling``: ``[floor(now/size)*size, +size)``, the open window that contains now;
    * ``hopping``: windows of ``size_ms`` starting every ``step_ms``; of those that contain now, the
      one that started first (the fullest one): start = ``(floor((now - size) / step) + 1) * step``.
      (The most recently *started* one would only hold ``[k*step, now]`` whatever ``size`` is.)

    Buckets after the bucket of now are never included.

    >>> Window("sliding", 30_000).bucket_range(10_000, 65_000)
    (40000, 60000)
    >>> Window("tumbling", 60_000).bucket_range(10_000, 65_000)
    (60000, 60000)
    >>> Window("hopping", 60_000, 20_000).bucket_range(10_000, 65_000)
    (20000, 60000)
    """

    kind: Literal["sliding", "tumbling", "hopping"]
    size_ms: int
    step_ms: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("sliding", "tumbling", "hopping"):
            raise DefinitionError(f"window kind must be sliding, tumbling or hopping, not {self.kind!r}")
        if not isinstance(self.size_ms, int) or self.size_ms <= 0:
            raise DefinitionError(f"window size must be a positive int of ms, not {self.size_ms!r}")
        if self.kind == "hopping":
            if not isinstance(self.step_ms, int) or not 0 < self.step_ms <= self.size_ms:
                raise DefinitionError(
                    f"hopping window needs 0 < step_ms <= size_ms, got step {self.step_ms!r}"
                )
        elif self.step_ms is not None:
            raise DefinitionError(f"step_ms is only for hopping windows, not {self.kind}")

    def validate(self, bucket_ms: int) -> None:
        """Raise :class:`DefinitionError` unless size and step are whole numbers of buckets."""
        if self.size_ms % bucket_ms or (self.step_ms is not None and self.step_ms % bucket_ms):
            raise DefinitionError(
                f"window {self.kind} size={self.size_ms} step={self.step_ms}: must be multiples of bucket_ms={bucket_ms}"
            )

    def bucket_range(self, bucket_ms: int, now_ms: int) -> tuple[int, int]:
        """The first and last bucket start (inclusive) of this window evaluated at ``now_ms``."""
        last = now_ms - now_ms % bucket_ms
        if self.kind == "sliding":
            return last - self.size_ms + bucket_ms, last
        if self.kind == "tumbling":
            return now_ms - now_ms % self.size_ms, last
        step = self.step_ms or self.size_ms
        return ((now_ms - self.size_ms) // step + 1) * step, last


@dataclass(frozen=True)
class FeatureSpec:
    """One output feature: ``agg`` of ``field`` over ``window`` (see ``features.aggregations``)."""

    name: str
    field: str
    agg: str
    window: Window

    def __post_init__(self) -> None:
        if self.agg not in AGGREGATIONS:
            raise DefinitionError(
                f"feature {self.name!r}: unknown agg {self.agg!r}; known: {sorted(AGGREGATIONS)}"
            )


@dataclass(frozen=True)
class FeatureView:
    """A versioned set of features over one source topic; see the module docstring for an example."""

    name: str
    version: int
    source_topic: str
    entity_key: str
    ts_field: str
    fields: tuple[FieldSpec, ...]
    features: tuple[FeatureSpec, ...]
    bucket_ms: int = 10_000
    allowed_lateness_ms: int = 60_000
    unknown_fields: Literal["reject", "ignore"] = "ignore"
    max_future_ms: int = 300_000
    ts_format: str = "auto"  # see features.timestamps: auto | epoch_ms | epoch_s | rfc3339 | a strftime pattern

    def __post_init__(self) -> None:
        where = f"feature view {self.name!r} v{self.version}"
        if not isinstance(self.bucket_ms, int) or self.bucket_ms <= 0:
            raise DefinitionError(f"{where}: bucket_ms must be a positive int")
        if self.allowed_lateness_ms < 0 or self.max_future_ms < 0:
            raise DefinitionError(f"{where}: allowed_lateness_ms and max_future_ms must be >= 0")
        if self.unknown_fields not in ("reject", "ignore"):
            raise DefinitionError(f"{where}: unknown_fields must be 'reject' or 'ignore'")
        check_ts_format(self.ts_format)
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise DefinitionError(f"{where}: duplicate field names {names}")
        if {self.entity_key, self.ts_field} & set(names) or self.entity_key == self.ts_field:
            raise DefinitionError(
                f"{where}: entity_key and ts_field must differ from each other and the fields"
            )
        types = {f.name: f.type for f in self.fields}
        seen: set[str] = set()
        for feat in self.features:
            if feat.name in seen:
                raise DefinitionError(f"{where}: duplicate feature name {feat.name!r}")
            seen.add(feat.name)
            if feat.field not in types:
                raise DefinitionError(f"{where}: feature {feat.name!r} uses unknown field {feat.field!r}")
            if types[feat.field] == "str" and AGGREGATIONS[feat.agg].numeric_only:
                raise DefinitionError(f"{where}: feature {feat.name!r}: {feat.agg} needs a numeric field")
            feat.window.validate(self.bucket_ms)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in definition order (the order of model inputs)."""
        return tuple(f.name for f in self.features)

    @property
    def retention_ms(self) -> int:
        """How long a bucket can still be needed: max window size (+ step) + allowed lateness (the state TTL)."""
        longest = max((f.window.size_ms + (f.window.step_ms or 0) for f in self.features), default=0)
        return longest + self.allowed_lateness_ms

    def fingerprint(self) -> str:
        """A 12-hex-digit hash of the whole definition; any change yields a new one (and fresh state keys)."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        data = asdict(self)
        if data["ts_format"] == "auto":  # added later: left out at its default, so existing state keys stay valid
            del data["ts_format"]
        body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(body).hexdigest()[:12]
