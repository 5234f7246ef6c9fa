"""Artifacts: sha256, atomic save, verify-before-unpickle."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from models.artifacts import atomic_write_bytes, load_verified, save_artifact, sha256_file
from models.exceptions import ArtifactMissingError, IntegrityError, ModelError


def test_save_returns_sha_of_written_bytes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "model.pkl"
    digest = save_artifact({"a": [1, 2, 3]}, path)
    raw = path.read_bytes()
    assert digest == hashlib.sha256(raw).hexdigest() == sha256_file(path)
    assert raw[:2] == b"\x80\x05"  # pickle protocol 5
    assert [p.name for p in path.parent.iterdir()] == ["model.pkl"]  # no temp file left behind


def test_load_verified_round_trip(tmp_path: Path) -> None:
    digest = save_artifact({"k": 1.5}, tmp_path / "m.pkl")
    assert load_verified(tmp_path / "m.pkl", digest.upper()) == {"k": 1.5}


def test_tampered_artifact_is_never_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.pkl"
    digest = save_artifact([1, 2], path)
    with open(path, "ab") as fh:
        fh.write(b"\x00")
    calls: list[bytes] = []
    monkeypatch.setattr(pickle, "loads", lambda data, *a, **k: calls.append(data))
    with pytest.raises(IntegrityError, match="NOT loaded") as info:
        load_verified(path, digest)
    assert isinstance(info.value, ModelError)
    assert calls == []


def test_file_is_read_once_and_those_bytes_are_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No TOCTOU: the bytes hashed are the bytes unpickled, with a single read of the file."""
    path = tmp_path / "m.pkl"
    digest = save_artifact("good", path)
    good = path.read_bytes()
    reads: list[Path] = []
    real_read_bytes = Path.read_bytes

    def read_then_swap(self: Path) -> bytes:
        reads.append(self)
        data = real_read_bytes(self)
        self.write_bytes(pickle.dumps("evil"))  # an attacker swaps the file right after the read
        return data

    seen: list[bytes] = []
    real_loads = pickle.loads
    monkeypatch.setattr(Path, "read_bytes", read_then_swap)
    monkeypatch.setattr(pickle, "loads", lambda data: seen.append(data) or real_loads(data))
    assert load_verified(path, digest) == "good"
    assert len(reads) == 1 and seen == [good]


def test_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactMissingError):
        load_verified(tmp_path / "nope.pkl", "0" * 64)


def test_atomic_write_replaces(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
