"""The file-based registry: stages, history, rollback, multi-instance and multi-process safety."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.exceptions import IntegrityError, RegistryError
from models.registry import ModelVersion, Registry

FEATURES = ["hr_mean_5m", "spo2_min_5m"]


def _reg(tmp_path: Path, **kw: object) -> Registry:
    return Registry(tmp_path / "registry", **kw)  # type: ignore[arg-type]


def _register(reg: Registry, model: str = "risk", payload: object = None) -> ModelVersion:
    return reg.register(model, payload if payload is not None else {"w": 1}, feature_names=FEATURES)


def test_register_assigns_versions_and_records_metadata(tmp_path: Path) -> None:
    ticks = iter(range(1000, 2000))
    reg = _reg(tmp_path, clock=lambda: next(ticks))
    v1 = reg.register(
        "risk", {"w": 1}, feature_names=FEATURES, feature_types=["float", "int"], metrics={"auc": 0.91},
        reference={"features": {"hr_mean_5m": {"edges": [1, 2]}}}, registered_by="ana", flavor="river",
        tags={"run": "42"},
    )
    v2 = _register(reg, payload={"w": 2})
    assert (v1.version, v2.version) == (1, 2)
    assert v1.stage == v2.stage == "staging"
    assert reg.get("risk", 1) == v1
    assert v1.feature_types == ("float", "int") and v2.feature_types == ("float", "float")
    assert v1.metrics == {"auc": 0.91} and v1.tags == {"run": "42"} and v1.flavor == "river"
    assert v1.reference == {"features": {"hr_mean_5m": {"edges": [1, 2]}}}
    assert (v1.registered_by, v1.registered_at, v1.promoted_at) == ("ana", 1000, None)
    assert v1.artifact == "risk/v1/model.pkl" and (reg.root / v1.artifact).is_file()
    assert reg.load("risk", 2) == {"w": 2}
    assert reg.models() == ["risk"]
    assert reg.production("risk") is None
    assert ModelVersion.from_dict(json.loads(json.dumps(v1.to_dict()))) == v1


def test_unknown_model_and_version(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    with pytest.raises(RegistryError, match="unknown model"):
        reg.get("nope", 1)
    assert reg.revision("nope") == 0
    assert reg.models() == []
    _register(reg)
    with pytest.raises(RegistryError, match="no version 7"):
        reg.get("risk", 7)
    with pytest.raises(RegistryError):
        reg.promote("risk", 7)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "..", "sp ace"])
def test_invalid_model_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="invalid model name"):
        _register(_reg(tmp_path), model=name)


def test_invalid_registration_inputs(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    with pytest.raises(RegistryError):
        reg.register("m", 1, feature_names=[])
    with pytest.raises(RegistryError):
        reg.register("m", 1, feature_names=["a", "a"])
    with pytest.raises(RegistryError):
        reg.register("m", 1, feature_names=["a", "b"], feature_types=["float"])
    with pytest.raises(RegistryError):
        reg.register("m", 1, feature_names=["a"], reference={"x": object()})
    assert reg.models() == []  # nothing half-registered


def test_promote_archives_previous_and_records_history(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    for _ in range(3):
        _register(reg)
    assert reg.promote("risk", 1, by="ana", reason="first").stage == "production"
    p2 = reg.promote("risk", 2, by="bob", reason="better auc")
    assert p2.stage == "production" and p2.promoted_at is not None
    assert reg.production("risk") == p2
    assert [v.stage for v in reg.versions("risk")] == ["archived", "production", "staging"]
    events = reg.history("risk")
    assert [(e["action"], e["version"], e["from_version"], e["by"], e["reason"]) for e in events] == [
        ("promote", 1, None, "ana", "first"),
        ("promote", 2, 1, "bob", "better auc"),
    ]
    assert all(isinstance(e["at"], int) for e in events)
    rev = reg.revision("risk")
    reg.promote("risk", 2)  # already in production: no change, no event
    assert reg.revision("risk") == rev and len(reg.history("risk")) == 2


def test_archive(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    _register(reg)
    _register(reg)
    reg.promote("risk", 1)
    assert reg.archive("risk", 2, by="ana", reason="stale").stage == "archived"
    assert reg.history("risk")[-1]["action"] == "archive"
    assert reg.history("risk")[-1]["from_stage"] == "staging"
    reg.archive("risk", 1, reason="withdrawn")
    assert reg.production("risk") is None
    n = len(reg.history("risk"))
    reg.archive("risk", 1)  # idempotent
    assert len(reg.history("risk")) == n


def test_rollback_promotes_previous_and_records_reason(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    for _ in range(3):
        _register(reg)
    reg.promote("risk", 1)
    reg.promote("risk", 2)
    reg.promote("risk", 3)
    assert reg.rollback_target("risk").version == 2  # type: ignore[union-attr]
    assert reg.rollback_target("risk", exclude={2}).version == 1  # type: ignore[union-attr]
    rolled = reg.rollback("risk", by="monitor", reason="psi=0.31 on hr_mean_5m")
    assert rolled.version == 2 and rolled.stage == "production"
    assert reg.get("risk", 3).stage == "archived"
    last = reg.history("risk")[-1]
    assert last["action"] == "rollback" and last["rolled_back_version"] == 3
    assert (last["version"], last["by"], last["reason"]) == (2, "monitor", "psi=0.31 on hr_mean_5m")
    # v3 was rolled back from: it is known bad, the next rollback goes to v1, not back to v3
    assert reg.rollback("risk", reason="again").version == 1
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback("risk")


def test_rollback_to_explicit_version_and_errors(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    for _ in range(3):
        _register(reg)
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback("risk")
    reg.promote("risk", 2)
    assert reg.rollback_target("risk") is None  # only one version was ever promoted
    with pytest.raises(RegistryError, match="already in production"):
        reg.rollback("risk", to_version=2)
    assert reg.rollback("risk", to_version=3, reason="manual").version == 3  # a staging version is fine
    assert reg.production("risk").version == 3  # type: ignore[union-attr]


def test_command_id_makes_mutations_idempotent(tmp_path: Path) -> None:
    """Every scorer instance sees the same control command; the registry applies it once."""
    reg = _reg(tmp_path)
    for _ in range(3):
        _register(reg)
    for v in (1, 2, 3):
        reg.promote("risk", v)
    first = reg.rollback("risk", reason="drift", command_id="cmd-1")
    again = Registry(reg.root).rollback("risk", reason="drift", command_id="cmd-1")
    assert first.version == again.version == 2
    assert reg.production("risk").version == 2  # type: ignore[union-attr]
    assert sum(e["action"] == "rollback" for e in reg.history("risk")) == 1


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["promote", "archive", "rollback"]), st.integers(1, 4)),
                    max_size=25))
def test_rollback_never_returns_current_production(tmp_path_factory: pytest.TempPathFactory,
                                                   ops: list[tuple[str, int]]) -> None:
    reg = Registry(tmp_path_factory.mktemp("reg"))
    for _ in range(4):
        _register(reg)
    for op, v in ops:
        prod = reg.production("risk")
        target = reg.rollback_target("risk", exclude={v})
        assert target is None or (prod is None or target.version != prod.version)
        assert target is None or target.version != v
        if op == "promote":
            reg.promote("risk", v)
        elif op == "archive":
            reg.archive("risk", v)
        elif prod is None or reg.rollback_target("risk") is None:  # nothing to roll back, or nowhere to go
            with pytest.raises(RegistryError, match="rollback 'risk'"):
                reg.rollback("risk")
        else:
            expected = reg.rollback_target("risk")
            rolled = reg.rollback("risk")
            assert expected is not None and rolled.version == expected.version != prod.version
            assert reg.get("risk", prod.version).stage == "archived"
            assert reg.production("risk").version == rolled.version  # type: ignore[union-attr]
        assert sum(m.stage == "production" for m in reg.versions("risk")) <= 1


def test_second_instance_sees_changes(tmp_path: Path) -> None:
    a, b = _reg(tmp_path), _reg(tmp_path)
    assert b.revision("risk") == 0
    _register(a)
    assert b.revision("risk") == 1 and b.get("risk", 1).stage == "staging"
    a.promote("risk", 1)
    assert b.revision("risk") == 2 and b.production("risk").version == 1  # type: ignore[union-attr]
    v2 = _register(b)
    a.promote("risk", v2.version)
    assert b.production("risk").version == 2 and a.revision("risk") == b.revision("risk") == 4  # type: ignore[union-attr]
    assert a.history("risk") == b.history("risk")
    assert a.models() == b.models() == ["risk"]


def _register_many(root: str, worker: int, n: int) -> list[int]:
    reg = Registry(root)
    return [reg.register("shared", {"worker": worker, "i": i}, feature_names=["x"]).version for i in range(n)]


def test_concurrent_registration_from_processes_is_unique_and_gapless(tmp_path: Path) -> None:
    root = str(tmp_path / "registry")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_register_many, [(root, w, 5) for w in range(4)])
    got = sorted(v for vs in results for v in vs)
    assert got == list(range(1, 21))
    reg = Registry(root)
    versions = reg.versions("shared")
    assert [v.version for v in versions] == list(range(1, 21))
    assert reg.revision("shared") == 20
    payloads = {(d["worker"], d["i"]) for d in (reg.load("shared", v.version) for v in versions)}  # type: ignore[index]
    assert payloads == {(w, i) for w in range(4) for i in range(5)}
    leftovers = [p for p in (reg.root / "shared").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_tampered_artifact_raises_and_is_never_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = _reg(tmp_path)
    mv = _register(reg)
    with open(reg.root / mv.artifact, "ab") as fh:
        fh.write(b"x")

    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("pickle.loads called on unverified bytes")

    monkeypatch.setattr(pickle, "loads", forbidden)
    with pytest.raises(IntegrityError, match="Restore the original artifact"):
        reg.load("risk", mv.version)


def test_registry_json_is_the_documented_layout(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    _register(reg)
    reg.promote("risk", 1, by="ana")
    state = json.loads((reg.root / "risk" / "registry.json").read_text())
    assert state["format"] == 1 and state["model"] == "risk" and state["revision"] == 2
    assert state["next_version"] == 2 and [v["version"] for v in state["versions"]] == [1]
    assert (reg.root / "risk" / "v1" / "model.pkl").is_file()


def test_corrupt_registry_json_is_reported(tmp_path: Path) -> None:
    reg = _reg(tmp_path)
    _register(reg)
    (reg.root / "risk" / "registry.json").write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        reg.versions("risk")
