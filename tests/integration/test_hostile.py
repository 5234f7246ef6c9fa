"""Hostile input and a hostile control plane, against a running worker on the real broker and Redis.

1. A corpus of 1,200 malformed or hostile records mixed into a valid stream: every bad one lands in the DLQ with
   its reason, every good one is scored, the worker never restarts.
2. Forged, unsigned, replayed, stale and unknown-version commands, and an artifact whose bytes changed after
   registration: each is rejected and acked as rejected, raises an alert, and the scorer keeps serving.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from models.registry import Registry
from streams import codec
from streams.control.channel import publish
from streams.control.protocol import new_command, sign_command
from streams.runtime.workers import build_pipeline

from .rollback_chain import read_all, read_records
from .test_scale_out import MODEL, env, read_predictions  # noqa: F401 - shared fixture

pytestmark = pytest.mark.integration


def hostile_corpus(n: int, seed: int = 0) -> list[tuple[bytes | None, bytes, str]]:
    """(key, value, expected reason) for ``n`` bad records of every kind the issue names."""
    rng = random.Random(seed)
    good = {"patient_id": "P00001", "ts": 1_700_000_000_000, "hr": 80.0, "rr": 16.0, "spo2": 97.0,
            "temp": 36.8, "sbp": 120.0, "dbp": 80.0}
    makers = [
        lambda: (b"P00001", b'{"patient_id": "P00001", "ts": 17', "malformed_json"),
        lambda: _random_bytes(rng),
        lambda: (b"P00001", b"[1, 2, 3]", "not_an_object"),
        lambda: (b"P00001", codec.encode({**good, "hr": "eighty"}), "wrong_type"),
        lambda: (b"P00001", codec.encode({**good, "spo2": True}), "wrong_type"),
        lambda: (b"P00001", codec.encode({k: v for k, v in good.items() if k != "hr"}), "missing_field"),
        lambda: (b"P00001", b'{"patient_id":"P00001","ts":1700000000000,"hr":NaN,"rr":16,"spo2":97,"temp":36.8,'
                            b'"sbp":120,"dbp":80}', "not_finite"),
        lambda: (b"P00001", b'{"patient_id":"P00001","ts":1700000000000,"hr":1e999,"rr":16,"spo2":97,'
                            b'"temp":36.8,"sbp":120,"dbp":80}', "not_finite"),
        lambda: (b"P00001", codec.encode({**good, "hr": 10**6}), "out_of_range"),
        lambda: (b"P00001", codec.encode({**good, "note": "x" * 100_000}), "too_large"),
        lambda: (b"P00002", codec.encode(good), "key_mismatch"),
        lambda: (b"P00001", codec.encode({**good, "ts": "yesterday"}), "bad_timestamp"),
    ]
    return [makers[i % len(makers)]() for i in range(n)]


def _random_bytes(rng: random.Random) -> tuple[bytes, bytes, str]:
    """64 random bytes: not UTF-8 (almost always: ``bad_encoding``), or UTF-8 that is no JSON."""
    value = bytes(rng.getrandbits(8) for _ in range(64))
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return b"P00001", value, "bad_encoding"
    return b"P00001", value, "bad_encoding" if b"\x00" in value[:4] else "malformed_json"


def test_1200_hostile_records_mixed_into_a_valid_stream(env) -> None:  # noqa: ANN001, F811
    settings, view, sim = env
    bad = hostile_corpus(1200)
    good = sim[:1500]
    worker = build_pipeline(settings, view, MODEL, instance="hostile")[0].start()
    try:
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                             "partitioner": "murmur2_random", "message.max.bytes": 2_000_000})
        order = [("bad", b) for b in bad] + [("good", g) for g in good]
        random.Random(1).shuffle(order)
        good_in_order = [g for kind, g in order if kind == "good"]
        for kind, item in order:
            if kind == "good":
                producer.produce(view.source_topic, codec.encode(item.value), item.key)
            else:
                producer.produce(view.source_topic, item[1], item[0])
        producer.flush(30)
        dlq = []
        deadline = time.time() + 90
        while time.time() < deadline and len(dlq) < len(bad):
            dlq = read_records(settings.kafka.bootstrap_servers, f"{view.source_topic}.dlq", 1, idle_s=1.5)
        preds = [p for p in read_predictions(settings, set(), timeout_s=5) if p["variant"] == "champion"]
        assert worker.alive and worker.error is None  # never restarted, never died
        assert worker.loop.health.consecutive_failures == 0
    finally:
        worker.stop()
    reasons = Counter(dict(m.headers())["error"].decode() for m in dlq)
    assert sum(reasons.values()) == len(bad), reasons
    assert reasons == Counter(r for _, _, r in bad), reasons
    sources = set()
    for m in dlq:
        headers = dict(m.headers())
        assert headers["source_topic"].decode() == view.source_topic
        sources.add((int(headers["source_partition"]), int(headers["source_offset"])))
    assert len(sources) == len(dlq)  # each dead letter names its own source record
    assert len({p["prediction_id"] for p in preds}) == len(good_in_order)  # every good one scored


def test_forged_replayed_stale_and_tampered_commands_are_rejected(env) -> None:  # noqa: ANN001, F811
    settings, view, sim = env
    registry = Registry(settings.registry_dir)
    v1 = registry.production(MODEL)
    v2 = registry.register(MODEL, registry.load(MODEL, v1.version), feature_names=view.feature_names)
    tampered = registry.register(MODEL, registry.load(MODEL, v1.version), feature_names=view.feature_names)
    with open(registry.artifact_path(MODEL, tampered.version), "ab") as fh:
        fh.write(b"\x00")  # bytes changed after registration
    worker = build_pipeline(settings, view, MODEL, instance="guard")[0].start()
    key = settings.control_key.encode()
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    now = int(time.time() * 1000)

    def cmd(**kw):  # noqa: ANN003, ANN202
        return new_command(kw.pop("command", "rollback"), model=MODEL, now_ms=kw.pop("now_ms", now), **kw)

    replayed = sign_command(cmd(to_version=v2.version), key)
    cases = {
        "unsigned": cmd(to_version=v2.version),
        "forged": sign_command(cmd(to_version=v2.version), b"not-the-key"),
        "stale": sign_command(cmd(to_version=v2.version, now_ms=now - 3_600_000), key),
        "unknown_version": sign_command(cmd(to_version=999), key),
        "tampered_artifact": sign_command(cmd(command="promote", to_version=tampered.version), key),
        "valid": replayed,
        "replayed": replayed,
    }
    try:
        time.sleep(3)  # the worker's control reader is assigned before the commands are produced
        for message in cases.values():
            publish(producer, settings.topics.control, message)
        deadline = time.time() + 30
        acks: list[dict] = []
        while time.time() < deadline and len(acks) < len(cases):
            acks = read_all(settings.kafka.bootstrap_servers, settings.topics.control, 1, idle_s=1.0)
            acks = [a for a in acks if a.get("type") == "ack"]
        assert worker.alive and worker.error is None
        active = worker.probes["active_version"]()
    finally:
        worker.stop()
    by_id: dict[str, list[dict]] = {}
    for a in acks:
        by_id.setdefault(a["ack_for"], []).append(a)
    assert [a["status"] for a in by_id[replayed["command_id"]]] == ["applied", "rejected"]  # the replay is refused
    assert "replayed" in by_id[replayed["command_id"]][1]["error"]
    for name in ("unsigned", "forged", "stale", "unknown_version", "tampered_artifact"):
        [ack] = by_id[cases[name]["command_id"]]
        assert ack["status"] == "rejected" and ack["error"], (name, ack)
    assert "sha256" in by_id[cases["tampered_artifact"]["command_id"]][0]["error"].lower() or \
        "integrity" in by_id[cases["tampered_artifact"]["command_id"]][0]["error"].lower()
    assert active == v2.version  # the valid rollback applied; the tampered promote never did
    alerts = read_all(settings.kafka.bootstrap_servers, settings.topics.alerts, 1, idle_s=1.0)
    rejected = [a for a in alerts if a["statistic"] == "command_rejected"]
    assert len(rejected) >= 6, [a["summary"] for a in alerts]
