"""JSON encoding of topic values (orjson: UTF-8 bytes in, bytes out).

Example:
    >>> decode(encode({"a": 1, "b": [1.5]}))
    {'a': 1, 'b': [1.5]}
"""

from __future__ import annotations

from typing import Any

import orjson

DecodeError = orjson.JSONDecodeError


def encode(value: Any) -> bytes:
    """Serialise ``value`` to compact JSON bytes; numpy scalars and dataclasses are supported."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def decode(data: bytes | str) -> Any:
    """Parse JSON bytes; raises :class:`DecodeError` (a ``ValueError``) on malformed input."""
    return orjson.loads(data)
