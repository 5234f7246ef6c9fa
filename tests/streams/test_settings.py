"""Settings: environment over TOML over defaults, security passthrough, redaction, typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.exceptions import ConfigError
from streams.runtime.clients import consumer_config
from streams.settings import KafkaSettings, Settings

TOML = """
redis_url = "redis://toml:6379/3"
registry_dir = "/toml/registry"
metrics_port = 9100
log_json = true
control_max_age_s = 42.5

[kafka]
bootstrap_servers = "toml:9092"
session_timeout_ms = 7000
fetch_wait_max_ms = 10
auto_offset_reset = "latest"
create_topics = false

[kafka.security]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "PLAIN"
"sasl.password" = "toml-secret"

[topics]
source_partitions = 12

[pipeline]
batch_max_rows = 1000
batch_max_ms = 20
"""


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "driftline.toml"
    path.write_text(TOML)
    return path


def test_defaults_without_env_or_file() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka.auto_offset_reset == "earliest"
    assert s.kafka.security == {}
    assert s.topics.source_partitions == 3
    assert s.pipeline.batch_max_rows == 500
    assert s.control_key == ""


def test_toml_values_apply(toml_file: Path) -> None:
    s = Settings.from_env({}, toml_file)
    assert s.kafka.bootstrap_servers == "toml:9092"
    assert s.kafka.session_timeout_ms == 7000
    assert s.kafka.fetch_wait_max_ms == 10
    assert s.kafka.auto_offset_reset == "latest"
    assert s.kafka.create_topics is False
    assert s.topics.source_partitions == 12
    assert (s.pipeline.batch_max_rows, s.pipeline.batch_max_ms) == (1000, 20)
    assert (s.redis_url, s.registry_dir, s.metrics_port, s.log_json) == (
        "redis://toml:6379/3", "/toml/registry", 9100, True)
    assert s.control_max_age_s == 42.5
    assert s.kafka.security["security.protocol"] == "SASL_SSL"


def test_config_file_from_env_variable(toml_file: Path) -> None:
    s = Settings.from_env({"DRIFTLINE_CONFIG": str(toml_file)})
    assert s.kafka.bootstrap_servers == "toml:9092"


def test_explicit_path_wins_over_env_config_path(toml_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[kafka]\nbootstrap_servers = "other:1"\n')
    s = Settings.from_env({"DRIFTLINE_CONFIG": str(other)}, toml_file)
    assert s.kafka.bootstrap_servers == "toml:9092"


def test_env_wins_over_toml(toml_file: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "env:9092", "DRIFTLINE_SESSION_TIMEOUT_MS": "9000",
        "DRIFTLINE_FETCH_WAIT_MAX_MS": "5",
        "DRIFTLINE_AUTO_OFFSET_RESET": "error", "DRIFTLINE_CREATE_TOPICS": "yes",
        "DRIFTLINE_SOURCE_PARTITIONS": "6", "DRIFTLINE_BATCH_MAX_ROWS": "7", "DRIFTLINE_BATCH_MAX_MS": "8",
        "DRIFTLINE_BATCH_LINGER_MS": "3",
        "REDIS_URL": "redis://env:1/0", "DRIFTLINE_REGISTRY": "/env/reg", "DRIFTLINE_METRICS_PORT": "9200",
        "DRIFTLINE_LOG_JSON": "0", "DRIFTLINE_CONTROL_MAX_AGE_S": "10", "DRIFTLINE_CONTROL_KEY": "sekrit",
    }
    s = Settings.from_env(env, toml_file)
    assert s.kafka.bootstrap_servers == "env:9092"
    assert s.kafka.session_timeout_ms == 9000
    assert s.kafka.fetch_wait_max_ms == 5
    assert s.kafka.auto_offset_reset == "error"
    assert s.kafka.create_topics is True
    assert s.topics.source_partitions == 6
    assert (s.pipeline.batch_max_rows, s.pipeline.batch_max_ms, s.pipeline.batch_linger_ms) == (7, 8, 3)
    assert (s.redis_url, s.registry_dir, s.metrics_port, s.log_json) == ("redis://env:1/0", "/env/reg", 9200, False)
    assert s.control_max_age_s == 10.0
    assert s.control_key == "sekrit"


def test_explicit_overrides_win_over_env() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://env:1/0"}).replace(redis_url="redis://cli:2/0")
    assert s.redis_url == "redis://cli:2/0"


def test_control_key_is_not_read_from_toml_and_not_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('control_key = "from-file"\n')
    assert Settings.from_env({}, path).control_key == ""
    s = Settings.from_env({"DRIFTLINE_CONTROL_KEY": "top-secret"})
    assert "top-secret" not in repr(s)


def test_key_rotation_settings_from_env_and_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('control_key_id = "2024-06"\ncontrol_previous_key_id = "2024-01"\n'
                    'control_previous_key = "from-file"\n')
    s = Settings.from_env({"DRIFTLINE_CONTROL_PREVIOUS_KEY": "old-secret"}, path)
    assert (s.control_key_id, s.control_previous_key_id, s.control_previous_key) == ("2024-06", "2024-01",
                                                                                      "old-secret")
    assert "old-secret" not in repr(s)
    assert Settings.from_env({}, path).control_previous_key == ""  # keys come from the environment only
    env = {"DRIFTLINE_CONTROL_KEY_ID": "k2", "DRIFTLINE_CONTROL_PREVIOUS_KEY_ID": "k1"}
    assert (Settings.from_env(env).control_key_id, Settings.from_env(env).control_previous_key_id) == ("k2", "k1")


@pytest.mark.parametrize("var", ["DRIFTLINE_CONTROL_KEY_ID", "DRIFTLINE_CONTROL_PREVIOUS_KEY_ID"])
def test_bad_key_id_raises_config_error(var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: "has space"})


def test_security_passthrough_from_env() -> None:
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/ca.pem",
           "KAFKA_SSL_KEY_PASSWORD": "kp", "KAFKA_SASL_USERNAME": "", "UNRELATED": "x"}
    cfg = Settings.from_env(env).kafka.client_config()
    assert cfg == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SSL",
                   "ssl.ca.location": "/ca.pem", "ssl.key.password": "kp"}


def test_security_env_overrides_toml_per_key(toml_file: Path) -> None:
    s = Settings.from_env({"KAFKA_SASL_PASSWORD": "env-secret", "KAFKA_SASL_USERNAME": "bob"}, toml_file)
    assert s.kafka.security == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                "sasl.password": "env-secret", "sasl.username": "bob"}


def test_redacted_hides_secrets_only() -> None:
    k = KafkaSettings(bootstrap_servers="b:1", security={"sasl.password": "p", "ssl.key.password": "q",
                                                         "sasl.username": "u"})
    red = k.redacted()
    assert red == {"bootstrap.servers": "b:1", "sasl.password": "***", "ssl.key.password": "***",
                   "sasl.username": "u"}
    assert "p" not in red.values() and "q" not in red.values()
    assert k.client_config()["sasl.password"] == "p"  # the real config still carries it


@pytest.mark.parametrize("var", ["DRIFTLINE_SESSION_TIMEOUT_MS", "DRIFTLINE_SOURCE_PARTITIONS",
                                 "DRIFTLINE_BATCH_MAX_ROWS", "DRIFTLINE_METRICS_PORT",
                                 "DRIFTLINE_REPLICATION_FACTOR"])
def test_bad_int_env_raises_config_error_naming_the_variable(var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: "lots"})


def test_bad_int_in_toml_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[pipeline]\nbatch_max_rows = "many"\n')
    with pytest.raises(ConfigError, match="DRIFTLINE_BATCH_MAX_ROWS"):
        Settings.from_env({}, path)


@pytest.mark.parametrize(("var", "raw"), [("DRIFTLINE_BATCH_MAX_ROWS", "0"), ("DRIFTLINE_BATCH_MAX_MS", "-1"),
                                          ("DRIFTLINE_BATCH_LINGER_MS", "-5")])
def test_out_of_range_batching_raises_config_error(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: raw})


@pytest.mark.parametrize("raw", ["-1", "300001"])
def test_fetch_wait_outside_librdkafkas_range_raises_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="DRIFTLINE_FETCH_WAIT_MAX_MS"):
        Settings.from_env({"DRIFTLINE_FETCH_WAIT_MAX_MS": raw})


def test_consumers_take_the_fetch_wait_from_settings() -> None:
    assert consumer_config(KafkaSettings(), "g")["fetch.wait.max.ms"] == 20
    assert consumer_config(KafkaSettings(fetch_wait_max_ms=5), "g")["fetch.wait.max.ms"] == 5


def test_bad_float_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="DRIFTLINE_CONTROL_MAX_AGE_S"):
        Settings.from_env({"DRIFTLINE_CONTROL_MAX_AGE_S": "five minutes"})


def test_bad_offset_reset_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="AUTO_OFFSET_RESET"):
        Settings.from_env({"DRIFTLINE_AUTO_OFFSET_RESET": "smallest"})


def test_unreadable_or_invalid_toml_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.from_env({}, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.from_env({}, bad)


@pytest.mark.parametrize("raw,expected", [("1", True), ("TRUE", True), (" on ", True), ("yes", True),
                                          ("0", False), ("false", False), ("", False), ("nope", False)])
def test_bool_parsing(raw: str, expected: bool) -> None:
    assert Settings.from_env({"DRIFTLINE_LOG_JSON": raw}).log_json is expected


def test_dlq_topic_name() -> None:
    assert Settings().topics.dlq("vitals") == "vitals.dlq"
