"""The feature views shipped with driftline (examples, and the defaults of the demo pipelines).

* ``VITALS_VIEW`` (topic ``vitals``, key ``patient_id``): vital signs of ICU patients.
* ``GPS_VIEW`` (topic ``gps``, key ``vehicle_id``): vehicle positions. ``heading_change_rate_1m`` is
  ``angle_change_rate`` (mean absolute heading change in degrees per second, wrapped at 360);
  ``distance_1m`` is ``integral`` of speed: mean speed (m/s) x the time between the window's first and
  last fix, in metres. It is a speed-based approximation (no haversine over lat/lon): it needs no
  cross-field state, and the speedometer is usually less noisy than GPS fixes at 1 Hz.

Example:
    >>> VIEWS["vitals"].feature_names[:3]
    ('hr_mean_5m', 'hr_std_5m', 'hr_max_5m')
    >>> GPS_VIEW.retention_ms
    360000
"""

from __future__ import annotations

from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window, parse_duration


def _sliding(text: str) -> Window:
    return Window("sliding", parse_duration(text))


VITALS_VIEW = FeatureView(
    name="vitals",
    version=1,
    source_topic="vitals",
    entity_key="patient_id",
    ts_field="ts",
    fields=(
        FieldSpec("hr", min=20, max=250),
        FieldSpec("rr", min=2, max=70),
        FieldSpec("spo2", min=50, max=100),
        FieldSpec("temp", min=30, max=45),
        FieldSpec("sbp", min=40, max=260),
        FieldSpec("dbp", min=20, max=160),
    ),
    features=(
        FeatureSpec("hr_mean_5m", "hr", "mean", _sliding("5m")),
        FeatureSpec("hr_std_5m", "hr", "std", _sliding("5m")),
        FeatureSpec("hr_max_5m", "hr", "max", _sliding("5m")),
        FeatureSpec("rr_mean_5m", "rr", "mean", _sliding("5m")),
        FeatureSpec("spo2_min_15m", "spo2", "min", _sliding("15m")),
        FeatureSpec("spo2_mean_5m", "spo2", "mean", _sliding("5m")),
        FeatureSpec("temp_last", "temp", "last", _sliding("15m")),
        FeatureSpec("sbp_mean_5m", "sbp", "mean", _sliding("5m")),
        FeatureSpec("sbp_slope_30m", "sbp", "slope", _sliding("30m")),
        FeatureSpec("dbp_mean_5m", "dbp", "mean", _sliding("5m")),
    ),
    # One-minute buckets: windows slide minute by minute, which vital-sign features tolerate, and a 30-minute
    # window folds 30 buckets instead of 180 (Redis memory, read and write cost all scale with it).
    bucket_ms=60_000,
)

GPS_VIEW = FeatureView(
    name="gps",
    version=1,
    source_topic="gps",
    entity_key="vehicle_id",
    ts_field="ts",
    fields=(
        FieldSpec("lat", min=-90, max=90),
        FieldSpec("lon", min=-180, max=180),
        FieldSpec("speed", min=0, max=90),
        FieldSpec("heading", min=0, max=360),
    ),
    features=(
        FeatureSpec("speed_mean_1m", "speed", "mean", _sliding("1m")),
        FeatureSpec("speed_max_1m", "speed", "max", _sliding("1m")),
        FeatureSpec("speed_std_5m", "speed", "std", _sliding("5m")),
        FeatureSpec("heading_change_rate_1m", "heading", "angle_change_rate", _sliding("1m")),
        FeatureSpec("distance_1m", "speed", "integral", _sliding("1m")),
    ),
    bucket_ms=5_000,
)

VIEWS: dict[str, FeatureView] = {"vitals": VITALS_VIEW, "gps": GPS_VIEW}
