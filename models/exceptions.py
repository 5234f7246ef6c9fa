"""Errors of the model layer."""

from __future__ import annotations

from streams.exceptions import DriftlineError


class ModelError(DriftlineError):
    """A model could not be loaded, routed or scored."""


class RegistryError(ModelError):
    """The registry has no such model/version, or a stage transition is not allowed."""


class IntegrityError(ModelError):
    """An artifact's bytes do not match the sha256 recorded at registration: it is never unpickled."""
