"""Model artifacts on disk: sha256 fingerprints, atomic writes and verify-then-unpickle loading.

A pickle is code: unpickling bytes from an untrusted file runs whatever they say. The registry records the
sha256 of every artifact at registration, and :func:`load_verified` reads the file **once**, hashes exactly
those bytes, and only unpickles them when the hash matches. There is no second read between the check and
the use, so a file swapped in the meantime can never be unpickled (no time-of-check/time-of-use gap).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> digest = save_artifact({"w": [1.0, 2.0]}, d / "model.pkl")
    >>> digest == sha256_file(d / "model.pkl")
    True
    >>> load_verified(d / "model.pkl", digest)
    {'w': [1.0, 2.0]}
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
from pathlib import Path

from models.exceptions import ArtifactMissingError, IntegrityError

__all__ = ["sha256_bytes", "sha256_file", "save_artifact", "load_verified", "atomic_write_bytes", "write_temp"]

PICKLE_PROTOCOL = 5
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``.

    >>> sha256_bytes(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, ``os.replace``.

    Readers see either the old file or the new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp(path.parent, path.name, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_temp(directory: Path, name: str, data: bytes) -> str:
    """Write ``data`` to a new fsynced temp file ``.<name>.*.tmp`` in ``directory`` and return its path (the
    caller renames it into place, e.g. under a lock, or removes it). Nothing is left behind on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable by syncing its directory (best effort on platforms without O_DIRECTORY)."""
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save_artifact(obj: object, path: Path) -> str:
    """Pickle ``obj`` (protocol 5) to ``path`` atomically and return the sha256 hex of the written bytes."""
    data = pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    atomic_write_bytes(Path(path), data)
    return sha256_bytes(data)


def load_verified(path: Path, expected_sha256: str) -> object:
    """Read ``path`` once, check its sha256 against ``expected_sha256``, then unpickle those same bytes.

    Raises:
        ArtifactMissingError: the file does not exist.
        IntegrityError: the bytes differ from what was registered; nothing is unpickled.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactMissingError(
            f"model artifact {path} does not exist: check the registry root, or re-register the model"
        ) from None
    actual = sha256_bytes(data)
    if actual != expected_sha256.strip().lower():
        raise IntegrityError(
            f"model artifact {path} has sha256 {actual}, but the registry recorded {expected_sha256}: "
            "the file was modified or replaced after registration. It was NOT loaded. Restore the original "
            "artifact, or register the model again and promote the new version."
        )
    return pickle.loads(data)
