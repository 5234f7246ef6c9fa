"""Errors of the model layer.

::

    ModelError
     ├── RegistryError            no such model/version, or a stage transition is not allowed
     ├── IntegrityError           an artifact's sha256 does not match the registry
     ├── ArtifactMissingError     the artifact file recorded in the registry is gone
     ├── RoutingError             a traffic split is malformed (also a ValueError)
     ├── ABTestError              impossible counts for an A/B test (also a ValueError)
     └── TrainingError            the training data cannot produce a binary classifier
"""

from __future__ import annotations

from streams.exceptions import DriftlineError


class ModelError(DriftlineError):
    """A model could not be loaded, routed or scored."""


class RegistryError(ModelError):
    """The registry has no such model/version, or a stage transition is not allowed."""


class IntegrityError(ModelError):
    """An artifact's bytes do not match the sha256 recorded at registration: it is never unpickled."""


class ArtifactMissingError(ModelError):
    """The artifact file recorded in the registry does not exist (deleted or wrong registry root)."""


class RoutingError(ModelError, ValueError):
    """A traffic split is malformed (canary share outside 0..100, challenger equal to champion...)."""


class ABTestError(ModelError, ValueError):
    """The counts given to an A/B test are impossible (negative, or more successes than trials)."""


class TrainingError(ModelError):
    """The training data cannot produce a binary classifier (one class only, too few rows, bad shape)."""
