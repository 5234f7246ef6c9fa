"""Errors of the monitor layer."""

from __future__ import annotations

from streams.exceptions import DriftlineError


class MonitorError(DriftlineError):
    """A detector, profile or alert sink was misconfigured or failed."""
