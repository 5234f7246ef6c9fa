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
