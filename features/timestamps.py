"""Timestamp formats a feature view can declare (``FeatureView.ts_format``), each a parser to epoch ms.

* ``auto`` (the default): epoch milliseconds as a number, or an RFC 3339 string with a UTC offset;
* ``epoch_ms``: a number of milliseconds (an integer-valued string is accepted too, as CSV files give it);
* ``epoch_s``: a number of seconds, fractions allowed (``1700000000.25``);
* ``rfc3339``: an RFC 3339 date-time (``2024-05-01T12:00:00+02:00``, ``...Z``, lowercase ``t``/``z``, any
  fraction; see :func:`rfc3339_ms`);
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
import re
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


# RFC 3339 section 5.6 ``date-time``: full-date "T" full-time, where "T" may be lowercase (or a space, as its
# note allows), time-secfrac has one or more digits, and time-offset is "Z" / "z" or +HH:MM / -HH:MM. ASCII digits
# only. Nothing else of ISO 8601 (no week dates, no basic format, no decimal comma, no offset without colon).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?", re.ASCII)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to the proleptic Gregorian date y-m-d (Howard Hinnant's ``days_from_civil``).

    >>> _days_from_civil(1970, 1, 1), _days_from_civil(2000, 3, 1), _days_from_civil(1969, 12, 31)
    (0, 11017, -1)
    """
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def rfc3339_ms(raw: str) -> int:
    """Epoch milliseconds of an RFC 3339 date-time; raises ``RecordError("bad_timestamp")``.

    Every form of the RFC is accepted: ``T`` or ``t`` (or a space), ``Z`` or ``z`` or a numeric offset, a
    fraction of any length (truncated to the millisecond: nanoseconds are accepted, and dropped). A leap second
    (``23:59:60``) is read as the instant right after ``23:59:59.999``, i.e. the next minute's ``:00`` (its
    fraction kept): epoch time has no 61st second, and this keeps the order of events around it.

    >>> rfc3339_ms("2023-11-14T22:13:20Z"), rfc3339_ms("2023-11-14t23:13:20.123456789+01:00")
    (1700000000000, 1700000000123)
    >>> rfc3339_ms("2016-12-31T23:59:60Z") == rfc3339_ms("2017-01-01T00:00:00z")
    True
    >>> rfc3339_ms("2023-11-14T22:13:20+0100")
    Traceback (most recent call last):
    ...
    features.exceptions.RecordError: bad_timestamp: '2023-11-14T22:13:20+0100' is not RFC 3339
    """
    m = _RFC3339.fullmatch(raw)
    if m is None:
        raise RecordError("bad_timestamp", f"{raw[:64]!r} is not RFC 3339")
    y, mo, d, h, mi, sec = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    frac, zulu, sign = m.group(7), m.group(8), m.group(9)
    if zulu is None and sign is None:
        raise RecordError("bad_timestamp", f"{raw[:64]!r} has no UTC offset")
    if (not 1 <= mo <= 12 or not 1 <= d <= _DAYS_IN_MONTH[mo] + (mo == 2 and _leap(y)) or h > 23 or mi > 59
            or sec > 60):
        raise RecordError("bad_timestamp", f"{raw[:64]!r} is not a valid date and time")
    offset_min = 0
    if sign is not None:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise RecordError("bad_timestamp", f"{raw[:64]!r} has an invalid UTC offset")
        offset_min = oh * 60 + om if sign == "+" else -(oh * 60 + om)
    minutes = (_days_from_civil(y, mo, d) * 24 + h) * 60 + mi - offset_min
    ms = (minutes * 60 + sec) * 1000 + (int(frac[:3].ljust(3, "0")) if frac else 0)
    return _in_range(ms, raw)


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def parse_rfc3339(raw: Any) -> int:
    if not isinstance(raw, str):
        raise RecordError("bad_timestamp", f"{type(raw).__name__} is not an RFC 3339 string")
    return rfc3339_ms(raw)


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
