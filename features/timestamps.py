"""Timestamp formats a feature view can declare (``FeatureView.ts_format``), each a parser to epoch ms.

* ``auto`` (the default): epoch milliseconds as a number, or an RFC 3339 string with a UTC offset;
* ``epoch_ms``: a number of milliseconds (an integer-valued string is accepted too, as CSV files give it);
* ``epoch_s``: a number of seconds, fractions allowed (``1700000000.25``);
* ``rfc3339``: an ISO 8601 / RFC 3339 string with an offset (``2024-05-01T12:00:00+02:00``, ``...Z``);
* a ``strftime`` pattern (anything with a ``%``), e.g. ``%Y-%m-%d %H:%M:%S``; without ``%z`` in the
  pattern the time is read as UTC.

Every parser raises :class:`~features.exceptions.RecordError` with reason ``bad_timestamp``.

Example:
    >>> timestamp_parser("epoch_s")(1700000000.25), timestamp_parser("epoch_ms")("1700000000250")
    (1700000000250, 1700000000250)
    >>> timestamp_parser("%Y-%m-%d")("2024-05-01")
    1714521600000
    >>> timestamp_parser("%d/%m/%Y")("2024-05-01")
    Traceback (most recent call last):
    ...
    features.exceptions.RecordError: bad_timestamp: '2024-05-01' does not match '%d/%m/%Y'
    >>> check_ts_format("unix")
    Traceback (most recent call last):
    ...
    features.exceptions.DefinitionError: timestamp format 'unix': use auto, epoch_ms, epoch_s, rfc3339 or a strftime pattern such as '%Y-%m-%d %H:%M:%S'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from features.exceptions import DefinitionError, RecordError

NAMED_FORMATS: tuple[str, ...] = ("auto", "epoch_ms", "epoch_s", "rfc3339")
MAX_TS_MS = 10**14
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

TimestampParser = Callable[[Any], int]


def check_ts_format(fmt: str) -> None:
    """Raise :class:`DefinitionError` unless ``fmt`` is a known format name or a strftime pattern."""
    if isinstance(fmt, str) and (fmt in NAMED_FORMATS or "%" in fmt):
        return
    raise DefinitionError(
        f"timestamp format {fmt!r}: use {', '.join(NAMED_FORMATS)} or a strftime pattern such as "
        "'%Y-%m-%d %H:%M:%S'")


def _in_range(ms: int, raw: Any) -> int:
    if not 0 <= ms < MAX_TS_MS:
        raise RecordError("bad_timestamp", f"{str(raw)[:64]!r} is out of range")
    return ms


def _number(raw: Any) -> float | int:
    if isinstance(raw, bool):
        raise RecordError("bad_timestamp", f"{raw!r} is not a timestamp")
    if isinstance(raw, int | float):
        value: float | int = raw
    elif isinstance(raw, str):
        try:
            value = int(raw) if raw.strip().lstrip("-").isdigit() else float(raw)
        except ValueError:
            raise RecordError("bad_timestamp", f"{raw[:64]!r} is not a number") from None
    else:
        raise RecordError("bad_timestamp", f"{type(raw).__name__} is not a timestamp")
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError("bad_timestamp", f"{raw!r} is not finite")
    return value


def parse_epoch_ms(raw: Any) -> int:
    return _in_range(math.floor(_number(raw)), raw)


def parse_epoch_s(raw: Any) -> int:
    value = _number(raw)
    ms = value * 1000 if isinstance(value, int) else math.floor(round(value * 1000, 3))
    return _in_range(int(ms), raw)


def parse_rfc3339(raw: Any) -> int:
    if not isinstance(raw, str):
        raise RecordError("bad_timestamp", f"{type(raw).__name__} is not an RFC 3339 string")
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise RecordError("bad_timestamp", f"{raw[:64]!r} is not RFC 3339") from None
    if dt.tzinfo is None:
        raise RecordError("bad_timestamp", f"{raw[:64]!r} has no UTC offset")
    return _in_range((dt - _EPOCH) // _MS, raw)


def _strftime_parser(pattern: str) -> TimestampParser:
    def parse(raw: Any) -> int:
        if not isinstance(raw, str):
            raise RecordError("bad_timestamp", f"{type(raw).__name__} is not a string matching {pattern!r}")
        try:
            dt = datetime.strptime(raw, pattern)
        except ValueError:
            raise RecordError("bad_timestamp", f"{raw[:64]!r} does not match {pattern!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return _in_range((dt - _EPOCH) // _MS, raw)

    return parse


def timestamp_parser(fmt: str) -> TimestampParser:
    """The parser of format ``fmt`` (see the module docstring); ``auto`` is ``records.parse_timestamp``."""
    check_ts_format(fmt)
    if fmt == "auto":
        from features.records import parse_timestamp
        return parse_timestamp
    named: dict[str, TimestampParser] = {"epoch_ms": parse_epoch_ms, "epoch_s": parse_epoch_s,
                                         "rfc3339": parse_rfc3339}
    return named.get(fmt) or _strftime_parser(fmt)
