"""Errors of the monitor layer.

::

    MonitorError                      a detector, profile or alert sink was misconfigured or failed
     ├── MonitorConfigError           a parameter is out of range (also a ValueError)
     ├── ProfileError                 a reference profile or histogram is empty, malformed or corrupt
     └── ObservationError             one observation cannot be used (e.g. a non-0/1 value for DDM)
"""

from __future__ import annotations

from streams.exceptions import DriftlineError


class MonitorError(DriftlineError):
    """A detector, profile or alert sink was misconfigured or failed."""


class MonitorConfigError(MonitorError, ValueError):
    """A monitor parameter is out of range; the message names the parameter and the allowed range."""


class ProfileError(MonitorError, ValueError):
    """A reference profile or histogram cannot be built or loaded; retrain or re-register the profile."""


class ObservationError(MonitorError, ValueError):
    """One observation is not valid for the detector it was fed to (the caller's stream is wrong)."""
