"""A Bytewax 0.21 job computing the vitals view and a risk score per event (run by ``bench.peers_bench`` with the
``bench`` venv's python): ``python -m bench.peer_jobs.bytewax_job BROKERS IN OUT MODEL_DIR sklearn|hand``.

KafkaSource over every partition from the beginning (``tail=False``: the dataflow ends at the end of the
backlog), ``stateful_map`` per patient, one JSON record per event to KafkaSink. ``sklearn`` (what a user writes): the
patient's last 31 minutes of readings (:class:`~bench.peer_jobs.vitals.Readings`, numpy per event) and the
registry's sklearn pipeline on one row; ``hand`` (the tuned job): per-minute aggregates with the prefix fold
cached (:class:`~bench.peer_jobs.vitals.Buckets`) and the model's coefficients applied by hand. State lives in memory only: no recovery, no
offsets committed (Bytewax's recovery is a separate SQLite store, off here, as in the issue's measurement).
"""

from __future__ import annotations

import sys
import time

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from bench.peer_jobs.vitals import Buckets, Readings, load_score, valid


def build(brokers: str, source: str, sink: str, model_dir: str, variant: str) -> Dataflow:
    score = load_score(model_dir, variant)

    flow = Dataflow("vitals")
    msgs = op.input("in", flow, KafkaSource([brokers], [source], tail=False, add_config={"group.id": "bytewax"}))
    keyed = op.map("key", msgs, lambda m: (m.key.decode(), m.value))

    fresh = Buckets if variant == "hand" else Readings

    def step(state: Readings | Buckets | None, raw: bytes) -> tuple[Readings | Buckets | None, bytes | None]:
        state = state or fresh()
        record = orjson.loads(raw)
        values = valid(record)
        if values is None:
            return state, None
        ts = int(record["ts"])
        state.add(ts, values)
        features = state.features(ts)
        return state, orjson.dumps({"entity_id": record["patient_id"], "event_ts": ts, "features": features,
                                    "score": score(features),
                    "produced_ms": time.time() * 1000.0}, option=orjson.OPT_SERIALIZE_NUMPY)

    scored = op.stateful_map("features", keyed, step)
    out = op.filter_map("drop", scored, lambda kv: None if kv[1] is None else KafkaSinkMessage(kv[0].encode(), kv[1]))
    op.output("out", out, KafkaSink([brokers], sink))
    return flow


if __name__ == "__main__":
    run_main(build(*sys.argv[1:6]))
