"""The record parser the pipeline calls per Kafka record: ``features._check`` (C) for the common case,
:func:`features.records.parse_record` for everything else.

``record_parser(view)`` returns ``parse(key, value) -> Event``. The C parser accepts only what the Python
checker's fast tests accept (a dict with a str entity id equal to the key, an int epoch-ms timestamp, fields
that are in-range floats, small ints, ints or strs as declared) and builds the same Event; any other record,
including every defective one, is handed to ``parse_record``, which raises the ``RecordError`` with the same
reason and message as always. A view the C parser cannot mirror exactly keeps ``parse_record`` alone: a
declared ``ts_format``, or a bound that is not a finite double (``tests/features/test_records_fast_path.py``
compares both on hostile records).

``batch_parser(view)`` returns ``parse_batch(messages, future_ms)``: the common case of a whole batch of Kafka
messages in one C call (:class:`BatchParse`: the accepted events per partition, in message order, with offset and
partition set; the first and last offset of every partition; the indices of every other message, which the
caller runs through ``parse`` one by one as before). Without the C parser every message is left to the caller.

Example:
    >>> from features.definitions import FeatureView, FieldSpec
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x", max=10.0),), ())
    >>> parse = record_parser(view)
    >>> parse(b"a", b'{"id": "a", "ts": 5, "x": 2}')
    Event(entity_id='a', ts_ms=5, values={'x': 2.0}, offset=-1, partition=-1)
    >>> parse(b"a", b'{"id": "a", "ts": 5, "x": 11}')
    Traceback (most recent call last):
    ...
    features.exceptions.RecordError: out_of_range: field 'x'=11 outside [None, 10.0]
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from features.definitions import FeatureView, FieldSpec
from features.kernel import compiled_parts_on, exact_double
from features.per_view import per_view
from features.records import MAX_RECORD_BYTES, MAX_TS_MS, Event, parse_record

try:
    from features._check import Parser
except ImportError:  # built without a C compiler: parse_record serves
    Parser = None

Parse = Callable[[bytes | None, bytes | None], Event]


class BatchParse(NamedTuple):
    """What ``parse_batch`` gives for a batch of messages."""

    events: dict[int, list[Event]]  # partition -> accepted events, in message order
    first_offset: dict[int, int]  # partition -> smallest offset of the batch (every message counts)
    last_offset: dict[int, int]  # partition -> largest offset
    odd: list[int]  # indices of the messages left to ``parse`` (no key, too far ahead, not the common case)


ParseBatch = Callable[[Sequence[Any], int], BatchParse]
_KINDS = {"float": 0, "int": 1, "str": 2}


def _bound(value: float | int | None, default: float) -> float | None:
    """A bound as the double the C parser compares with, or None when no double stands for it exactly."""
    return default if value is None else exact_double(value)


def _field_spec(spec: FieldSpec) -> tuple[str, int, bool, float, float] | None:
    lo, hi = _bound(spec.min, -sys.float_info.max), _bound(spec.max, sys.float_info.max)
    if lo is None or hi is None or spec.type not in _KINDS:
        return None
    return spec.name, _KINDS[spec.type], spec.required, lo, hi


def compile_parser(view: FeatureView, environ: Mapping[str, str] = os.environ) -> Parse:
    """The parser of ``view`` (use :func:`record_parser`, which caches): C when the view allows it and the
    extension is built (not with ``DRIFTLINE_PURE_PYTHON=1``), else ``parse_record``."""
    slow = functools.partial(parse_record, view)
    fields = [_field_spec(spec) for spec in view.fields]
    if Parser is None or not compiled_parts_on(environ) or view.ts_format != "auto" or None in fields:
        return slow
    return Parser(view.entity_key, view.ts_field, MAX_TS_MS, MAX_RECORD_BYTES, view.unknown_fields == "reject",
                  tuple(fields), Event, orjson.loads, slow).parse


#: the (cached) record parser of a view
record_parser: Callable[[FeatureView], Parse] = per_view(compile_parser)


def leave_all_to_parse(messages: Sequence[Any], future_ms: int) -> BatchParse:
    """``parse_batch`` without the C parser: the offsets, and every message left to ``parse``."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for m in messages:
        partition, offset = m.partition(), m.offset()
        if offset > last.get(partition, -1):
            last[partition] = offset
        if offset < first.get(partition, offset + 1):
            first[partition] = offset
    return BatchParse({}, first, last, list(range(len(messages))))


def compile_batch_parser(view: FeatureView, environ: Mapping[str, str] = os.environ) -> ParseBatch:
    """The batch parser of ``view`` (use :func:`batch_parser`, which caches)."""
    parse = record_parser(view) if environ is os.environ else compile_parser(view, environ)
    owner = getattr(parse, "__self__", None)
    if Parser is None or not isinstance(owner, Parser):
        return leave_all_to_parse
    c_batch = owner.parse_batch
    return lambda messages, future_ms: BatchParse(*c_batch(messages, future_ms))


#: the (cached) batch parser of a view
batch_parser: Callable[[FeatureView], ParseBatch] = per_view(compile_batch_parser)
