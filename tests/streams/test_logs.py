"""JSON-lines logging and secret redaction (streams.logs), and the CLI hook."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.logs import REDACTED, RedactingFilter, configured_secrets, setup_logging

KEY = "c0ntr0l-key-0123456789abcdef"


@pytest.fixture()
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_have_the_fields_and_extras(restore_root: None) -> None:
    buf = io.StringIO()
    setup_logging(True, logging.INFO, stream=buf)
    log = logging.getLogger("streams.test")
    log.info("scored %d rows", 12, extra={"model_version": 3, "partition": 1, "offset": 99})
    log.debug("not shown")
    log.warning("plain")
    first, second = _lines(buf)
    assert first["level"] == "INFO" and first["logger"] == "streams.test" and first["msg"] == "scored 12 rows"
    assert (first["model_version"], first["partition"], first["offset"]) == (3, 1, 99)
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert second["msg"] == "plain" and "offset" not in second


def test_exceptions_go_into_the_same_json_line(restore_root: None) -> None:
    buf = io.StringIO()
    setup_logging(True, logging.INFO, secrets=[KEY], stream=buf)
    try:
        raise RuntimeError(f"bad signature with {KEY}")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    (line,) = _lines(buf)
    assert "RuntimeError" in line["exc"] and KEY not in line["exc"] and REDACTED in line["exc"]


@pytest.mark.parametrize("json_lines", [True, False])
def test_secrets_never_reach_the_output(restore_root: None, json_lines: bool) -> None:
    buf = io.StringIO()
    setup_logging(json_lines, logging.DEBUG, secrets=[KEY, "pd-routing-9876"], stream=buf)
    log = logging.getLogger("streams.secret")
    log.info("verifying with key %s", KEY)
    log.info("config %s", {"sasl.password": "hunter22", "bootstrap.servers": "k:9092"})
    log.info("sending password=hunter22 api_token: tok-abc to pagerduty pd-routing-9876")
    log.info("extra field", extra={"routing_key": "whatever-1", "partition": 4})
    out = buf.getvalue()
    for secret in (KEY, "hunter22", "tok-abc", "pd-routing-9876", "whatever-1"):
        assert secret not in out
    assert "k:9092" in out and out.count(REDACTED) >= 5
    if json_lines:
        assert _lines(buf)[-1]["partition"] == 4 and _lines(buf)[-1]["routing_key"] == REDACTED


def test_setup_twice_keeps_one_handler(restore_root: None) -> None:
    before = len(logging.getLogger().handlers)
    setup_logging(False, "INFO", stream=io.StringIO())
    setup_logging(True, "INFO", stream=io.StringIO())
    assert len(logging.getLogger().handlers) == before + 1


def test_filter_keeps_ordinary_values() -> None:
    f = RedactingFilter(secrets=["abc"])  # too short to mask safely: ignored
    assert f.redact_text("partition=3 offset=10 abc") == "partition=3 offset=10 abc"
    assert f.redact_value("items", [{"secret": "x"}, "ok"]) == [{"secret": REDACTED}, "ok"]


def test_configured_secrets_reads_env_and_the_key_file(tmp_path: Path) -> None:
    (tmp_path / "control.key").write_text("file-key-abcdef\n")
    env = {"DRIFTLINE_RUN_DIR": str(tmp_path), "DRIFTLINE_PAGERDUTY_ROUTING_KEY": "pd-1234",
           "KAFKA_SASL_PASSWORD": "sasl-pw"}
    assert {"file-key-abcdef", "pd-1234", "sasl-pw"} <= set(configured_secrets(env))
    assert configured_secrets({"DRIFTLINE_BATCH_MAX_ROWS": "x", "DRIFTLINE_CONTROL_KEY": KEY}) == [KEY]


def test_configured_secrets_include_the_previous_control_key() -> None:
    assert "previous-key-value" in configured_secrets({"DRIFTLINE_CONTROL_PREVIOUS_KEY": "previous-key-value",
                                                       "DRIFTLINE_RUN_DIR": "/nonexistent"})


def test_cli_flag_and_env_select_json_lines_with_secrets_masked(restore_root: None, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from streams.local.cli import main

    monkeypatch.setenv("DRIFTLINE_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("DRIFTLINE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("DRIFTLINE_CONTROL_KEY", KEY)
    assert main(["--log-json", "-v", "registry", "list"]) == 0
    assert logging.getLogger().level == logging.DEBUG
    logging.getLogger("cli").warning("key is %s", KEY)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == f"key is {REDACTED}"
    monkeypatch.setenv("DRIFTLINE_LOG_JSON", "1")
    assert main(["registry", "list"]) == 0
    logging.getLogger("cli").warning("json")
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["msg"] == "json"
    monkeypatch.delenv("DRIFTLINE_LOG_JSON")
    assert main(["registry", "list"]) == 0
    logging.getLogger("cli").warning("text")
    assert capsys.readouterr().err.strip().endswith("WARNING cli text")


def test_driftline_main_accepts_log_json(restore_root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from streams.local.cli import main

    monkeypatch.setenv("DRIFTLINE_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("DRIFTLINE_RUN_DIR", str(tmp_path / "run"))
    assert main(["--log-json", "registry", "list"]) == 0
    assert json.loads(capsys.readouterr().out) == []
