"""A Quix Streams 3.28 job computing the vitals view and a risk score per event (run by ``bench.peers_bench``
with the ``bench`` venv's python): ``python -m bench.peer_jobs.quix_job BROKERS IN OUT MODEL_DIR sklearn|hand N``.

``app.dataframe(topic)`` → ``apply(stateful=True)`` keeping each patient's window state in Quix's state store
(RocksDB, checkpointed every ``commit_interval``, its default 5 s; changelog topics off: the embedded broker is a
single node) → ``to_topic``. ``sklearn`` (what a user writes): the last 31 minutes of readings in the state, numpy
per event, the registry's sklearn pipeline on one row. ``hand`` (tuned): per-minute aggregates in the state, read
through an in-process cache of :class:`~bench.peer_jobs.vitals.Buckets` (prefix folds cached), the model's
coefficients applied by hand. Stops after ``N`` input records.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from quixstreams import Application

from bench.peer_jobs.vitals import Buckets, Readings, load_score, valid


def main(brokers: str, source: str, sink: str, model_dir: str, variant: str, count: str) -> None:
    score = load_score(model_dir, variant)

    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = Application(broker_address=brokers, consumer_group=f"quix-{Path(model_dir).name}-{variant}",
                          auto_offset_reset="earliest", auto_create_topics=False, use_changelog_topics=False,
                          state_dir=state_dir, loglevel="WARNING")
        topic = app.topic(source, value_deserializer="json")
        # tansu's DescribeConfigs leaves out retention.*, which Quix reads to derive its changelog config (unused
        # here): Kafka's defaults, as a user of this broker would set them
        extra = topic.broker_config.extra_config  # type: ignore[union-attr]
        extra.setdefault("retention.ms", "604800000")
        extra.setdefault("retention.bytes", "-1")
        sdf = app.dataframe(topic)

        cache: dict[str, Buckets] = {}

        def step(record: dict, state) -> dict | None:  # noqa: ANN001 - quixstreams' State
            values = valid(record)
            if values is None:
                return None
            ts = int(record["ts"])
            if variant == "hand":
                buckets = cache.get(record["patient_id"])
                if buckets is None:
                    buckets = cache[record["patient_id"]] = Buckets(state.get("buckets", {}))
                buckets.add(ts, values)
                state.set("buckets", buckets.state())
                features = buckets.features(ts)
            else:
                readings = Readings(state.get("readings", []))
                readings.add(ts, values)
                state.set("readings", list(readings.items))
                features = readings.features(ts)
            return {"entity_id": record["patient_id"], "event_ts": ts, "features": features,
                    "score": score(features),
                    "produced_ms": time.time() * 1000.0}

        sdf = sdf.apply(step, stateful=True).filter(lambda v: v is not None)
        sdf.to_topic(app.topic(sink, value_serializer="json"))
        app.run(count=int(count), timeout=60.0, collect=False)


if __name__ == "__main__":
    main(*sys.argv[1:7])
