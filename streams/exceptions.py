"""The root of driftline's exception tree and the errors of the Kafka plumbing.

::

    DriftlineError
     ├── ConfigError              streams: a setting is missing or malformed
     ├── InfrastructureError      streams: a dependency failed (the batch is retried, never dead-lettered)
     ├── StackError               streams: the embedded broker / Redis could not start or stop
     ├── ControlError             streams: a control command is malformed or not authentic
     │    └── ControlStoreError   streams: the control store (Redis) does not answer
     ├── features.exceptions.FeatureError
     │    └── RecordError         one bad record (goes to the DLQ with ``reason``)
     ├── models.exceptions.ModelError
     │    ├── RegistryError
     │    └── IntegrityError      an artifact's sha256 does not match the registry
     └── monitor.exceptions.MonitorError
"""

from __future__ import annotations


class DriftlineError(Exception):
    """Root of every error driftline raises on purpose."""


class ConfigError(DriftlineError):
    """A setting is missing or malformed; the message names the setting to fix."""


class InfrastructureError(DriftlineError):
    """A dependency (Redis, the broker) failed: the batch is retried as a whole, no record is blamed
    (``streams.runtime.isolation``)."""


class StackError(DriftlineError):
    """The embedded stack (broker or Redis) could not be started, reached or stopped."""


class ControlError(DriftlineError):
    """A control command is malformed, unsigned, forged, replayed or stale."""


class ControlStoreError(ControlError):
    """The control store (Redis) could not be read or written: commands wait and are decided when it answers."""
