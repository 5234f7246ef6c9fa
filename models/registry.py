"""A file-based model registry, safe for several processes on one filesystem.

Layout under the registry root::

    <root>/
      <model>/
        .lock               fcntl.flock target; every write holds it exclusively
        registry.json       the whole truth about <model>: versions, stages, history, revision
        v1/model.pkl        pickled estimator (protocol 5); its sha256 is recorded in registry.json
        v2/model.pkl
        ...

``registry.json`` (its shape, lock and atomic write: :mod:`models.registry_state`) holds ``{"format": 1, "model", "uid", "revision", "next_version", "versions": [...],
"history": [...]}`` (and ``control_revision``, see below). Every change takes the lock, reads the current file, applies the change, bumps
``revision`` and writes a new file atomically (temp file + ``os.replace``). Readers never lock: they see
either the previous file or the next one, never a partial write, and nothing is cached in memory, so every
:class:`Registry` instance (in any process) that reads the directory sees the same truth.

Stages: a new version is ``staging``; :meth:`Registry.promote` makes it ``production`` and archives the
previous production version; :meth:`Registry.rollback` promotes the previous good version and records the
rolled-back one. At most one version is in production. Artifacts are never deleted, so any version can be
promoted again. Mutations accept an optional ``command_id``: a command already applied (for instance one
control-topic rollback seen by every scorer instance) is a no-op the second time.

The control plane and the registry: what scorers serve is each model's *desired state* in the control store
(Redis, see :mod:`streams.control.store`), decided by signed commands. The stages follow it:
:meth:`Registry.follow_desired` is called by the scorers (every instance, any process; the lock serialises
them) with the desired champion and the desired state's revision; it promotes or rolls back only when that
revision is newer than the last one it followed (``control_revision``), so a slow writer holding an older
decision never undoes a newer one, and the same decision written twice changes nothing. :meth:`Registry.uid`
is the registry's random id for a model (minted with it): the control store's keys carry it, so a new
registry, or a model deleted and registered again, never inherits an old one's decisions.

Example:
    >>> import tempfile
    >>> reg = Registry(tempfile.mkdtemp())
    >>> v1 = reg.register("risk", {"w": 1}, feature_names=["hr", "spo2"])
    >>> (v1.version, v1.stage, v1.feature_types)
    (1, 'staging', ('float', 'float'))
    >>> reg.promote("risk", 1, by="ana").stage
    'production'
    >>> _ = reg.register("risk", {"w": 2}, feature_names=["hr", "spo2"])
    >>> _ = reg.promote("risk", 2, by="ana")
    >>> reg.rollback("risk", by="monitor", reason="psi>0.25").version
    1
    >>> [(v.version, v.stage) for v in reg.versions("risk")]
    [(1, 'production'), (2, 'archived')]
    >>> reg.load("risk", 1)
    {'w': 1}
"""

from __future__ import annotations

import os
import pickle
import secrets
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from models.artifacts import (
    PICKLE_PROTOCOL,
    _fsync_dir,
    load_verified,
    sha256_bytes,
    write_temp,
)
from models.exceptions import RegistryError
from models.registry_state import (
    STAGES,
    STATE_FILE,
    ModelVersion,
    Stage,
    check_name,
    find_version,
    locked,
    new_state,
    production_record,
    read_state,
    rollback_record,
    write_state,
)

__all__ = ["Stage", "STAGES", "ModelVersion", "Registry"]

_ARTIFACT_FILE = "model.pkl"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Registry:
    """File-based registry of model versions; see the module docstring for the layout and guarantees."""

    def __init__(self, root: Path | str, *, clock: Callable[[], int] | None = None) -> None:
        self._root = Path(root)
        self._clock = clock or _now_ms

    @property
    def root(self) -> Path:
        """The registry root directory."""
        return self._root

    # ----------------------------------------------------------------------------------------- reads
    def get(self, model: str, version: int) -> ModelVersion:
        """The record of ``model`` version ``version``; :class:`RegistryError` if unknown."""
        return ModelVersion.from_dict(find_version(self._read(model), model, version))

    def versions(self, model: str) -> list[ModelVersion]:
        """Every version of ``model``, oldest first; :class:`RegistryError` if the model is unknown."""
        return [ModelVersion.from_dict(v) for v in self._read(model)["versions"]]

    def models(self) -> list[str]:
        """Names of all registered models, sorted."""
        if not self._root.is_dir():
            return []
        return sorted(p.name for p in self._root.iterdir() if (p / STATE_FILE).is_file())

    def production(self, model: str) -> ModelVersion | None:
        """The version in production, or None."""
        rec = production_record(self._read(model))
        return None if rec is None else ModelVersion.from_dict(rec)

    def history(self, model: str) -> list[dict[str, Any]]:
        """Promote / archive / rollback events, oldest first: action, version, from_version, by, reason, at."""
        return [dict(e) for e in self._read(model)["history"]]

    def uid(self, model: str) -> str:
        """The registry's random id for ``model`` (minted on first use for a registry that predates it)."""
        state = self._read(model)
        if state.get("uid"):
            return str(state["uid"])
        with locked(self._root, model):
            state = self._read(model)
            if not state.get("uid"):
                state["uid"] = secrets.token_hex(8)
                self._write_state(model, state)
            return str(state["uid"])

    def control_revision(self, model: str) -> int:
        """The desired-state revision the stages last followed (0: never)."""
        return int(self._read(model).get("control_revision", 0))

    def revision(self, model: str) -> int:
        """A counter that increases on every change to ``model``; 0 while the model does not exist."""
        state = self._read_state(model)
        return 0 if state is None else int(state["revision"])

    def rollback_target(self, model: str, *, exclude: Collection[int] = ()) -> ModelVersion | None:
        """The most recently promoted version before the current production one, not in ``exclude``.

        Versions that were rolled back away from (and not promoted again since) are skipped too: they are
        known bad. Never returns the current production version.
        """
        rec = rollback_record(self._read(model), exclude)
        return None if rec is None else ModelVersion.from_dict(rec)

    def artifact_path(self, model: str, version: int) -> Path:
        """Absolute path of a version's artifact file."""
        return self._root / self.get(model, version).artifact

    def load(self, model: str, version: int) -> object:
        """Unpickle a version's artifact after verifying its recorded sha256 (see ``load_verified``)."""
        mv = self.get(model, version)
        return load_verified(self._root / mv.artifact, mv.sha256)

    # ---------------------------------------------------------------------------------------- writes
    def register(
        self, model: str, estimator: object, *, feature_names: Sequence[str],
        feature_types: Sequence[str] | None = None, metrics: Mapping[str, float] | None = None,
        reference: Mapping[str, Any] | None = None, registered_by: str = "unknown", flavor: str = "sklearn",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Store ``estimator`` as the next version of ``model`` (stage ``staging``) and return its record."""
        check_name(model)
        names = tuple(str(n) for n in feature_names)
        types = tuple(str(t) for t in feature_types) if feature_types is not None else ("float",) * len(names)
        if not names:
            raise RegistryError(f"register {model!r}: feature_names is empty; pass the model's input columns")
        if len(set(names)) != len(names):
            raise RegistryError(f"register {model!r}: duplicate feature names in {list(names)}")
        if len(types) != len(names):
            raise RegistryError(
                f"register {model!r}: {len(names)} feature_names but {len(types)} feature_types"
            )
        meta = {
            "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
            "reference": dict(reference or {}),
            "tags": {str(k): str(v) for k, v in (tags or {}).items()},
        }
        try:
            orjson.dumps(meta)
        except TypeError as exc:
            raise RegistryError(f"register {model!r}: metrics/reference/tags are not JSON-serialisable: {exc}") from exc

        data = pickle.dumps(estimator, protocol=PICKLE_PROTOCOL)
        digest = sha256_bytes(data)
        model_dir = self._root / model
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = write_temp(model_dir, _ARTIFACT_FILE, data)  # the slow part happens outside the lock
        try:
            with locked(self._root, model):
                state = self._read_state(model) or new_state(model)
                version = int(state["next_version"])
                rel = f"{model}/v{version}/{_ARTIFACT_FILE}"
                target = self._root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)  # a leftover from a crashed registration is simply overwritten
                _fsync_dir(target.parent)
                record = ModelVersion(
                    model=model, version=version, stage="staging", sha256=digest, artifact=rel,
                    feature_names=names, feature_types=types, metrics=meta["metrics"],
                    reference=meta["reference"], registered_by=str(registered_by),
                    registered_at=self._clock(), promoted_at=None, flavor=str(flavor), tags=meta["tags"],
                )
                state["versions"].append(record.to_dict())
                state["next_version"] = version + 1
                self._write_state(model, state)
                return record
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def promote(
        self, model: str, version: int, *, by: str = "unknown", reason: str = "", command_id: str | None = None
    ) -> ModelVersion:
        """Put ``version`` in production; the previous production version becomes ``archived``."""

        def change(state: dict[str, Any]) -> dict[str, Any]:
            rec = find_version(state, model, version)
            prod = production_record(state)
            if prod is not None and prod["version"] == rec["version"]:
                return rec  # already in production: nothing to record
            self._setproduction_record(state, rec, prod, "promote", by, reason, command_id)
            return rec

        return self._mutate(model, command_id, change)

    def archive(
        self, model: str, version: int, *, by: str = "unknown", reason: str = "", command_id: str | None = None
    ) -> ModelVersion:
        """Move ``version`` to ``archived`` (if it was in production, nothing is in production after)."""

        def change(state: dict[str, Any]) -> dict[str, Any]:
            rec = find_version(state, model, version)
            if rec["stage"] == "archived":
                return rec
            previous = rec["stage"]
            rec["stage"] = "archived"
            self._event(state, "archive", rec["version"], None, by, reason, command_id, from_stage=previous)
            return rec

        return self._mutate(model, command_id, change)

    def rollback(
        self, model: str, *, to_version: int | None = None, by: str = "unknown", reason: str = "",
        exclude: Collection[int] = (), command_id: str | None = None,
    ) -> ModelVersion:
        """Promote :meth:`rollback_target` (or ``to_version``) in place of the current production version.

        The history event records ``rolled_back_version`` and ``reason``. Raises :class:`RegistryError`
        when nothing is in production, when there is no eligible target, or when ``to_version`` is the
        current production version.
        """

        def change(state: dict[str, Any]) -> dict[str, Any]:
            prod = production_record(state)
            if prod is None:
                raise RegistryError(f"rollback {model!r}: no version is in production, nothing to roll back")
            if to_version is None:
                target = rollback_record(state, exclude)
                if target is None:
                    raise RegistryError(
                        f"rollback {model!r}: no earlier promoted version to roll back to from "
                        f"v{prod['version']}; promote a specific version instead"
                    )
            else:
                target = find_version(state, model, to_version)
                if target["version"] == prod["version"]:
                    raise RegistryError(
                        f"rollback {model!r}: v{to_version} is already in production; pick another version"
                    )
            self._setproduction_record(
                state, target, prod, "rollback", by, reason, command_id, rolled_back_version=prod["version"]
            )
            return target

        return self._mutate(model, command_id, change)

    def follow_desired(
        self, model: str, version: int, *, revision: int, action: str, command_id: str, by: str = "unknown",
        reason: str = "", **extra: Any,
    ) -> bool:
        """Put ``version`` in production because the control plane's desired state (``revision``) says so.

        ``action`` is the command (``rollback`` records the version it rolls back from as known bad, anything
        else is a ``promote``); ``extra`` goes into the history event (e.g. ``alert_id``). A no-op returning
        False when the registry already followed ``revision`` or a newer one; :class:`RegistryError` for an
        unknown version."""
        check_name(model)
        with locked(self._root, model):
            state = self._read(model)
            if int(state.get("control_revision", 0)) >= revision:
                return False
            rec = find_version(state, model, version)
            prod = production_record(state)
            if prod is None or prod["version"] != rec["version"]:
                kind = "rollback" if action == "rollback" else "promote"
                if kind == "rollback" and prod is not None:
                    extra = {**extra, "rolled_back_version": prod["version"]}
                self._setproduction_record(state, rec, prod, kind, by, reason, command_id, control_revision=revision,
                                     **extra)
            state["control_revision"] = int(revision)
            self._write_state(model, state)
            return True

    # ------------------------------------------------------------------------------------- internals
    def _setproduction_record(
        self, state: dict[str, Any], rec: dict[str, Any], prod: dict[str, Any] | None, action: str,
        by: str, reason: str, command_id: str | None, **extra: Any,
    ) -> None:
        if prod is not None:
            prod["stage"] = "archived"
        rec["stage"], rec["promoted_at"] = "production", self._clock()
        from_version = None if prod is None else prod["version"]
        self._event(state, action, rec["version"], from_version, by, reason, command_id, **extra)

    def _event(
        self, state: dict[str, Any], action: str, version: int, from_version: int | None,
        by: str, reason: str, command_id: str | None, **extra: Any,
    ) -> None:
        seq, at = len(state["history"]) + 1, self._clock()
        state["history"].append(
            {"seq": seq, "action": action, "version": version, "from_version": from_version, "by": str(by),
             "reason": str(reason), "at": at, "command_id": command_id, **extra}
        )

    def _mutate(
        self, model: str, command_id: str | None, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> ModelVersion:
        check_name(model)
        with locked(self._root, model):
            state = self._read(model)
            if command_id is not None:
                done = [e for e in state["history"] if e.get("command_id") == command_id]
                if done:  # replayed command: report what it did, change nothing
                    return ModelVersion.from_dict(find_version(state, model, done[-1]["version"]))
            before = orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
            rec = change(state)
            if orjson.dumps(state, option=orjson.OPT_SORT_KEYS) != before:
                self._write_state(model, state)
            return ModelVersion.from_dict(rec)

    def _read_state(self, model: str) -> dict[str, Any] | None:
        return read_state(self._root, model)

    def _read(self, model: str) -> dict[str, Any]:
        state = read_state(self._root, model)
        if state is None:
            known = ", ".join(self.models()) or "none"
            raise RegistryError(f"unknown model {model!r} in registry {self._root} (known: {known})")
        return state

    def _write_state(self, model: str, state: dict[str, Any]) -> None:
        write_state(self._root, model, state)
