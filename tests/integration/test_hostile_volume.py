"""At volume, on the real broker and Redis: 2,100+ hostile records of 36 kinds interleaved with 1,500 valid canaries.

Every canary is predicted exactly once, the DLQ holds exactly one dead letter per hostile record with the expected
reason, ``/health`` (served over HTTP as ``driftline run`` serves it, polled every 0.2 s) answers 200 throughout,
and the worker never fails a batch, restarts its consumer or dies. One kind is larger than the worker's producer
may send (its dead letter is cut to fit, with the original size and sha256 in headers).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from confluent_kafka import Producer

from streams import codec
from streams.metrics import HealthServer
from streams.runtime.workers import build_pipeline

from .rollback_chain import read_records
from .test_scale_out import MODEL, env  # noqa: F401 - shared fixture

pytestmark = pytest.mark.integration

GOOD = {"patient_id": "P00001", "ts": 1_700_000_000_000, "hr": 80.0, "rr": 16.0, "spo2": 97.0, "temp": 36.8,
        "sbp": 120.0, "dbp": 80.0}
K = b"P00001"
LIMIT = 600_000  # the worker's producer message.max.bytes in this test (DRIFTLINE_MESSAGE_MAX_BYTES)


def _raw(**fields: str) -> bytes:
    """GOOD as JSON text with some fields' JSON text replaced verbatim."""
    parts = {k: json.dumps(v) for k, v in GOOD.items()}
    parts.update(fields)
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in parts.items() if v is not None) + "}").encode("utf-8",
                                                                                              "surrogatepass")


def _without(name: str) -> bytes:
    return codec.encode({k: v for k, v in GOOD.items() if k != name})


def kinds(now_ms: int) -> dict[str, tuple[bytes | None, bytes | None, str]]:
    """36 kinds of bad record: name -> (key, value, expected reason)."""
    text = json.dumps(GOOD)
    return {
        "truncated json": (K, text[:40].encode(), "malformed_json"),
        "trailing comma": (K, text[:-1].encode() + b", }", "malformed_json"),
        "empty value": (K, b"", "malformed_json"),
        "tombstone": (K, None, "malformed_json"),
        "deep nesting": (K, b"[" * 3000 + b"]" * 3000, "malformed_json"),
        "array": (K, b"[1, 2, 3]", "not_an_object"),
        "string": (K, b'"P00001"', "not_an_object"),
        "number": (K, b"42", "not_an_object"),
        "byte order mark": (K, b"\xef\xbb\xbf" + text.encode(), "bad_encoding"),
        "utf-16": (K, text.encode("utf-16"), "bad_encoding"),
        "utf-16-le, no bom": (K, text.encode("utf-16-le"), "bad_encoding"),
        "utf-32": (K, text.encode("utf-32"), "bad_encoding"),
        "latin-1 byte in a string": (K, _raw(patient_id='"P0000\xe9"').replace(b"\xc3\xa9", b"\xe9"), "bad_encoding"),
        "lone surrogate in the id": (K, _raw(patient_id='"P00001\\ud800"'), "bad_encoding"),
        "lone surrogate elsewhere": (K, _raw(note='"\\udfff"'), "bad_encoding"),
        "cesu-8 surrogate bytes": (K, _raw(patient_id='"P\ud800"'), "bad_encoding"),
        "hr as text": (K, codec.encode({**GOOD, "hr": "eighty"}), "wrong_type"),
        "spo2 as bool": (K, codec.encode({**GOOD, "spo2": True}), "wrong_type"),
        "temp as object": (K, codec.encode({**GOOD, "temp": {"c": 36.8}}), "wrong_type"),
        "id as list": (K, codec.encode({**GOOD, "patient_id": ["P00001"]}), "wrong_type"),
        "missing hr": (K, _without("hr"), "missing_field"),
        "missing ts": (K, _without("ts"), "missing_field"),
        "missing id": (K, _without("patient_id"), "missing_field"),
        "NaN": (K, _raw(hr="NaN"), "not_finite"),
        "1e999": (K, _raw(rr="1e999"), "not_finite"),
        "out of range": (K, codec.encode({**GOOD, "hr": 10**6}), "out_of_range"),
        "400 digits": (K, _raw(hr="1" + "0" * 400), "out_of_range"),
        "too large": (K, codec.encode({**GOOD, "note": "x" * 100_000}), "too_large"),
        "key mismatch": (b"P00002", codec.encode(GOOD), "key_mismatch"),
        "null key": (None, codec.encode(GOOD), "key_mismatch"),
        "key not utf-8": (b"P0000\xff", codec.encode(GOOD), "key_mismatch"),
        "ts yesterday": (K, codec.encode({**GOOD, "ts": "yesterday"}), "bad_timestamp"),
        "ts week date": (K, codec.encode({**GOOD, "ts": "2023-W46-2T22:13:20Z"}), "bad_timestamp"),
        "ts 400 digits": (K, _raw(ts="9" * 400), "bad_timestamp"),
        "ts ten minutes ahead": (K, codec.encode({**GOOD, "ts": now_ms + 600_000}), "future"),
        "larger than the producer may send": (K, codec.encode({**GOOD, "note": "y" * (LIMIT + 50_000)}), "too_large"),
    }


def test_2100_hostile_records_of_36_kinds_among_canaries(env) -> None:  # noqa: ANN001, F811
    settings, view, sim = env
    settings = settings.replace(kafka=settings.kafka.__class__(**{**settings.kafka.__dict__,
                                                                  "message_max_bytes": LIMIT}))
    made = kinds(int(time.time() * 1000))
    assert len(made) >= 30
    rng = random.Random(7)
    bad: list[tuple[bytes | None, bytes | None, str]] = []
    for name, record in made.items():
        bad += [record] * (4 if name.startswith("larger") else 20 if name == "too large" else 64)
    assert len(bad) >= 2000
    good = sim[:1500]
    order = [("bad", b) for b in bad] + [("good", g) for g in good]
    rng.shuffle(order)

    worker = build_pipeline(settings, view, MODEL, instance="volume")[0]
    server = HealthServer(worker.metrics, worker.health).start()
    answers: Counter = Counter()
    red: list[str] = []
    done = threading.Event()

    def poll_health() -> None:
        url = f"http://127.0.0.1:{server.port}/health"
        while not done.is_set():
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    answers[resp.status] += 1
            except urllib.error.HTTPError as exc:
                answers[exc.code] += 1
                red.append(exc.read().decode()[:300])
            done.wait(0.2)

    worker.start()
    poller = None
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not worker.health()["healthy"]:
            time.sleep(0.1)  # started: assigned, polled once, Redis and broker answer
        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "partitioner": "murmur2_random",
                             "message.max.bytes": 2_000_000, "linger.ms": 5})
        for kind, item in order:
            if kind == "good":
                producer.produce(view.source_topic, codec.encode(item.value), item.key)
            else:
                producer.produce(view.source_topic, item[1], item[0])
            producer.poll(0)
        assert producer.flush(30) == 0
        dlq: list = []
        deadline = time.time() + 60
        while time.time() < deadline and len(dlq) < len(bad):
            dlq = read_records(settings.kafka.bootstrap_servers, f"{view.source_topic}.dlq", 1, idle_s=1.5)
        preds: list[dict] = []
        deadline = time.time() + 60
        while time.time() < deadline and len(preds) < len(good):
            preds = [codec.decode(m.value()) for m in read_records(settings.kafka.bootstrap_servers,
                                                                   settings.topics.predictions, 3, idle_s=1.5)]
        preds = [p for p in preds if p["variant"] == "champion"]
        done.set()
        poller.join(10)
        health = worker.health()
        assert worker.alive and worker.error is None  # never died
        assert worker.loop.health.consecutive_failures == 0 and worker.loop.health.last_error is None  # never failed
        assert health["progress"]["consumer_restarts"] == 0 and health["healthy"]
    finally:
        done.set()
        worker.stop()
        server.stop()
    assert answers[200] >= 20 and set(answers) == {200}, (answers, red[:3])  # 200 throughout
    reasons = Counter(dict(m.headers())["error"].decode() for m in dlq)
    assert len(dlq) == len(bad) and reasons == Counter(r for _, _, r in bad), reasons
    assert len({(dict(m.headers())["source_partition"], dict(m.headers())["source_offset"]) for m in dlq}) == len(bad)
    cut = [m for m in dlq if dict(m.headers()).get("truncated") == b"1"]
    original = made["larger than the producer may send"][1]
    assert len(cut) == 4 and all(len(m.value()) < LIMIT for m in cut)
    assert {dict(m.headers())["original_sha256"] for m in cut} == {hashlib.sha256(original).hexdigest().encode()}
    assert {dict(m.headers())["original_size"] for m in cut} == {str(len(original)).encode()}
    ids = [p["prediction_id"] for p in preds]
    assert len(ids) == len(set(ids)) == len(good)  # every canary predicted, none twice
