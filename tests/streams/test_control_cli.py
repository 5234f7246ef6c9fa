"""`driftline registry show` prints the desired state and its history; a hand-made stage change that scorers would
not follow is refused (real Redis at 127.0.0.1:6379 db 11, a registry in tmp_path; no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.registry import Registry
from models.scorer import Scorer
from streams.control.channel import Delivery
from streams.control.protocol import Command
from streams.local.cli import main
from streams.runtime.control_agent import ControlAgent
from streams.runtime.workers import control_store
from streams.settings import Settings

pytestmark = pytest.mark.integration
MODEL = "risk"


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client):  # noqa: ANN001, ANN201
    at = client.connection_pool.connection_kwargs  # the session's Redis, db 11 (tests/conftest.py)
    env = {"DRIFTLINE_REGISTRY": str(tmp_path / "registry"), "DRIFTLINE_RUN_DIR": str(tmp_path / "run"),
           "REDIS_URL": f"redis://{at['host']}:{at['port']}/{at['db']}", "DRIFTLINE_CONTROL_KEY": "k" * 64}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reg = Registry(env["DRIFTLINE_REGISTRY"])
    for v in (1, 2, 3):
        reg.register(MODEL, {"w": v}, feature_names=["x"], flavor="pickle")
    reg.promote(MODEL, 1)
    reg.promote(MODEL, 2)
    settings = Settings.from_env(env)
    store = control_store(settings, client, reg, MODEL)
    yield reg, store
    store.clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_registry_show_prints_the_desired_state_and_its_history(setup, capsys) -> None:  # noqa: ANN001
    reg, store = setup
    code, out, _ = run(capsys, "registry", "show", "--model", MODEL)
    assert code == 0 and out is not None and out["desired_state"] is None and out["control_history"] == []
    agent = ControlAgent(Scorer(reg, MODEL), store, reg, instance="w1", group="g")
    agent.start()
    rollback = Command("c-7", "rollback", MODEL, 1, None, "psi 0.41 on hr_mean_5m", "driftline-monitor", 1_000,
                       {"alert_id": "al-9"}, 2, key_id="k1")
    agent.handle([Delivery(rollback, "control[0]@3")], 1_001)
    code, out, _ = run(capsys, "registry", "show", "--model", MODEL)
    assert code == 0 and out is not None
    assert (out["version"], out["stage"]) == (1, "production")
    desired = out["desired_state"]
    assert (desired["version"], desired["command_id"], desired["issued_by"], desired["alert_id"]) == (
        1, "c-7", "driftline-monitor", "al-9")
    [line] = out["control_history"]
    assert {k: line[k] for k in ("command", "command_id", "issued_by", "reason", "alert_id", "issued_at",
                                 "applied_at", "from_version", "version")} == {
        "command": "rollback", "command_id": "c-7", "issued_by": "driftline-monitor",
        "reason": "psi 0.41 on hr_mean_5m", "alert_id": "al-9", "issued_at": 1_000, "applied_at": 1_001,
        "from_version": 2, "version": 1}
    assert out["history"][-1]["command_id"] == "c-7"


def test_a_hand_made_change_of_the_champion_is_refused_once_scorers_follow_a_desired_state(setup, capsys) -> None:  # noqa: ANN001
    reg, store = setup
    assert run(capsys, "registry", "promote", "--model", MODEL, "--version", "3")[0] == 0  # no desired state yet
    reg.promote(MODEL, 2)
    agent = ControlAgent(Scorer(reg, MODEL), store, reg, instance="w1", group="g")
    agent.start()
    agent.handle([Delivery(Command("c-1", "rollback", MODEL, 1, None, "", "ana", 1_000), "control[0]@1")], 1_001)
    code, _, err = run(capsys, "registry", "promote", "--model", MODEL, "--version", "3")
    assert code == 2 and "driftline control promote" in err and "v1" in err
    assert run(capsys, "registry", "rollback", "--model", MODEL)[0] == 2
    assert run(capsys, "registry", "archive", "--model", MODEL, "--version", "1")[0] == 2
    assert reg.production(MODEL).version == 1
    assert run(capsys, "registry", "archive", "--model", MODEL, "--version", "3")[0] == 0  # not the champion
    assert run(capsys, "registry", "promote", "--model", MODEL, "--version", "1")[0] == 0  # what is desired
    assert run(capsys, "registry", "promote", "--model", MODEL, "--version", "2", "--force")[0] == 0
    assert reg.production(MODEL).version == 2
