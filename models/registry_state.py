"""The registry's document for one model: ``<root>/<model>/registry.json``, its records and its file I/O.

:class:`models.registry.Registry` owns the operations (register, promote, rollback, ...); this module owns the
shape of the document (format 1: versions, stages, history, revision), the lock that serialises writers and the
atomic write readers rely on (temp file + ``os.replace``: a reader sees the previous file or the next one).

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with locked(root, "risk"):
    ...     write_state(root, "risk", new_state("risk"))
    >>> (read_state(root, "risk")["revision"], read_state(root, "absent"))
    (1, None)
    >>> check_name("../etc")
    Traceback (most recent call last):
    ...
    models.exceptions.RegistryError: invalid model name '../etc': use letters, digits, '.', '_' or '-' (max 128, no leading '.')
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from models.artifacts import atomic_write_bytes
from models.exceptions import RegistryError

__all__ = ["Stage", "STAGES", "ModelVersion", "check_name", "new_state", "find_version", "production_record",
           "rollback_record", "locked", "read_state", "write_state"]

Stage = Literal["staging", "production", "archived"]
STAGES: tuple[str, ...] = ("staging", "production", "archived")
FORMAT = 1
STATE_FILE = "registry.json"
LOCK_FILE = ".lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as recorded in ``registry.json``."""

    model: str
    version: int
    stage: str
    sha256: str
    artifact: str
    feature_names: tuple[str, ...]
    feature_types: tuple[str, ...]
    metrics: dict[str, float]
    reference: dict[str, Any]
    registered_by: str
    registered_at: int
    promoted_at: int | None
    flavor: str
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["feature_names"], data["feature_types"] = list(self.feature_names), list(self.feature_types)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVersion:
        """Inverse of :meth:`to_dict`."""
        return cls(
            model=str(data["model"]),
            version=int(data["version"]),
            stage=str(data["stage"]),
            sha256=str(data["sha256"]),
            artifact=str(data["artifact"]),
            feature_names=tuple(data["feature_names"]),
            feature_types=tuple(data["feature_types"]),
            metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            reference=dict(data.get("reference") or {}),
            registered_by=str(data.get("registered_by", "unknown")),
            registered_at=int(data["registered_at"]),
            promoted_at=None if data.get("promoted_at") is None else int(data["promoted_at"]),
            flavor=str(data.get("flavor", "sklearn")),
            tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
        )


def check_name(model: str) -> None:
    if not isinstance(model, str) or not _NAME_RE.match(model) or model in {".", ".."}:
        raise RegistryError(
            f"invalid model name {model!r}: use letters, digits, '.', '_' or '-' (max 128, no leading '.')"
        )


def new_state(model: str) -> dict[str, Any]:
    return {"format": FORMAT, "model": model, "uid": secrets.token_hex(8), "revision": 0, "next_version": 1,
            "versions": [], "history": []}


def find_version(state: dict[str, Any], model: str, version: int | None) -> dict[str, Any]:
    for rec in state["versions"]:
        if rec["version"] == version:
            return rec
    known = [r["version"] for r in state["versions"]]
    raise RegistryError(f"model {model!r} has no version {version!r} (registered versions: {known})")


def production_record(state: dict[str, Any]) -> dict[str, Any] | None:
    for rec in state["versions"]:
        if rec["stage"] == "production":
            return rec
    return None


def rollback_record(state: dict[str, Any], exclude: Collection[int]) -> dict[str, Any] | None:
    promoted: list[int] = []  # versions in the order they were (re)promoted
    bad: set[int] = set()
    for event in state["history"]:
        if event["action"] in ("promote", "rollback"):
            bad.discard(event["version"])
            promoted.append(event["version"])
            if event["action"] == "rollback" and event.get("from_version") is not None:
                bad.add(event["from_version"])
    prod = production_record(state)
    current = None if prod is None else prod["version"]
    skip = set(exclude) | bad | {current}
    for version in reversed(promoted):
        if version not in skip:
            return find_version(state, str(state["model"]), version)
    return None


@contextmanager
def locked(root: Path, model: str) -> Iterator[None]:
    """Hold ``<root>/<model>/.lock`` exclusively (fcntl.flock): every write of the model's document holds it."""
    model_dir = root / model
    model_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(model_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_state(root: Path, model: str) -> dict[str, Any] | None:
    """The model's document, or None when the model was never registered; a damaged file raises RegistryError."""
    check_name(model)
    try:
        raw = (root / model / STATE_FILE).read_bytes()
    except FileNotFoundError:
        return None
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(
            f"{root / model / STATE_FILE} is not valid JSON ({exc}); restore it from a backup"
        ) from exc
    if state.get("format") != FORMAT:
        raise RegistryError(f"{model!r}: unsupported registry format {state.get('format')!r}")
    return state


def write_state(root: Path, model: str, state: dict[str, Any]) -> None:
    """Bump ``revision`` and write the document atomically (call it under :func:`locked`)."""
    state["revision"] = int(state["revision"]) + 1
    data = orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    atomic_write_bytes(root / model / STATE_FILE, data)
