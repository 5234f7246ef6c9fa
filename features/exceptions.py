"""Errors of the feature layer."""

from __future__ import annotations

from streams.exceptions import DriftlineError


class FeatureError(DriftlineError):
    """A feature view is malformed or the store refused an operation."""


class RecordError(FeatureError):
    """One source record cannot be used; ``reason`` is a short machine-readable tag.

    Example:
        >>> err = RecordError("missing_field", "field 'hr' is required")
        >>> err.reason, str(err)
        ('missing_field', "missing_field: field 'hr' is required")
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class DefinitionError(FeatureError):
    """A feature view, window or feature spec is invalid; the message names the bad part."""


class ViewFileError(DefinitionError):
    """A view file (or ``module:ATTRIBUTE`` reference) cannot be turned into a feature view.

    The message names the file, the line where it could be found, the key path, and what is allowed;
    the same parts are attributes for tools.

    Example:
        >>> err = ViewFileError("pay.toml, line 3, fields.x.type: 'double' is not allowed", source="pay.toml",
        ...                     line=3, key="fields.x.type")
        >>> (err.source, err.line, err.key)
        ('pay.toml', 3, 'fields.x.type')
    """

    def __init__(self, message: str, *, source: str = "", line: int | None = None, key: str = "") -> None:
        self.source, self.line, self.key = source, line, key
        super().__init__(message)


class StaleOffsetError(FeatureError):
    """The store refused a save: its offset is not the one this writer expected.

    Another writer (a zombie consumer after a rebalance, or a replay) got there first. Reload the
    state with ``load`` and reprocess from the stored offset instead of overwriting.

    Example:
        >>> err = StaleOffsetError(expected=41, actual=57)
        >>> (err.expected, err.actual)
        (41, 57)
    """

    def __init__(self, expected: int, actual: int, detail: str = "") -> None:
        self.expected = expected
        self.actual = actual
        msg = detail or f"stored offset is {actual}, this writer expected {expected}; reload and reprocess"
        super().__init__(msg)


class OffsetRegressionError(StaleOffsetError):
    """A save tried to move the stored offset backwards (offsets only move forward)."""
