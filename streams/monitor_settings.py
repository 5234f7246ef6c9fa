"""The monitor's settings group (``Settings.monitor``): detector incidents, warm-up, sensor checks.

Environment variables (over the TOML table ``[monitor]``, over the defaults):

| variable | TOML key | default | what |
| --- | --- | --- | --- |
| ``DRIFTLINE_DETECTOR_WARMUP`` | ``detector_warmup`` | 1000 | events of a version's stream before its detectors may alert |
| ``DRIFTLINE_INCIDENT_RESOLVE_AFTER`` | ``incident_resolve_after`` | 5000 | events with no new detection before a detector incident resolves and re-arms |
| ``DRIFTLINE_CONFIRM_WITHIN`` | ``confirm_within`` | 2000 | outcomes within which DDM (or open drift) confirms an ADWIN error increase (critical) |
| ``DRIFTLINE_SENSOR_CHECKS`` | ``sensor_checks`` | true | per-entity sensor checks in the pipeline (stuck, dropout, spike) |
| ``DRIFTLINE_QUALITY_MIN_ENTITIES`` | ``quality_min_entities`` | 3 | faulty entities of one field that raise a ``data_quality`` alert |
| ``DRIFTLINE_QUARANTINE`` | ``quarantine`` | true | keep predictions of faulty entities out of the drift statistics |

Example:
    >>> MonitorSettings.from_env({"DRIFTLINE_DETECTOR_WARMUP": "200"}, {"quarantine": False})
    MonitorSettings(detector_warmup=200, incident_resolve_after=5000, confirm_within=2000, sensor_checks=True, quality_min_entities=3, quarantine=False)
    >>> MonitorSettings.from_env({"DRIFTLINE_INCIDENT_RESOLVE_AFTER": "0"}, {})
    Traceback (most recent call last):
    ...
    streams.exceptions.ConfigError: DRIFTLINE_INCIDENT_RESOLVE_AFTER must be >= 1, got 0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.exceptions import ConfigError


@dataclass(frozen=True)
class MonitorSettings:
    detector_warmup: int = 1_000
    incident_resolve_after: int = 5_000
    confirm_within: int = 2_000
    sensor_checks: bool = True
    quality_min_entities: int = 3
    quarantine: bool = True

    def __post_init__(self) -> None:
        for name, low in (("detector_warmup", 0), ("incident_resolve_after", 1), ("confirm_within", 0),
                          ("quality_min_entities", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"DRIFTLINE_{name.upper()} must be >= {low}, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str], table: Mapping[str, Any]) -> MonitorSettings:
        """From ``env`` over the TOML table ``[monitor]``."""
        values: dict[str, Any] = {}
        for name, default in cls().__dict__.items():
            raw = env.get(f"DRIFTLINE_{name.upper()}", table.get(name, default))
            try:
                values[name] = (str(raw).strip().lower() in ("1", "true", "yes", "on") if isinstance(default, bool)
                                else int(raw))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"DRIFTLINE_{name.upper()} must be an integer, got {raw!r}") from exc
        return cls(**values)
