"""The baseline a typical team writes with faust-streaming: one agent, one event at a time.

``async for event in stream.events():`` parse the JSON and validate it (``features.records.parse_record``), read the
entity's window state from Redis (``HGETALL``), apply the event with the real engine
(``features.engine.FeatureEngine``, one-event batch, so the window math is ours), write the changed buckets and the
latest vector back (one ``HSET``/``HDEL``/``PEXPIRE``/``SET`` pipeline; the vector as JSON), build the feature vector in the model's
column order, call ``predict_proba`` on that one row with the registry's production sklearn model, and
``await predictions.send(...)`` the prediction. Invalid and late records are sent to the dead-letter topic.

Deliberate choices, each what such an agent usually looks like:

* **redis-py's synchronous client** inside the agent (it blocks the event loop for each round trip: 2 per event);
* Faust's own auto-ack/commit (no offset in Redis, so a replay re-applies events: at-least-once state);
* the per-partition watermark lives in a dict in the process (not persisted);
* the Faust app has the settings of :func:`streams.runtime.faust_app.faust_app` (tansu-friendly session timeout, raw
  serializers, ``store="memory://"``, no web server), and its keys follow ``features.keys`` with the agent's own
  group, so ``bench.common.delete_group_keys`` removes them.

Example (needs a broker and Redis, so not a doctest; ``tests/bench/test_faust_bench.py`` runs it)::

    agent = NaiveFaustAgent(settings, view, "vitals-risk", "bench-naive").start()
    agent.wait_consumed(3_000, timeout_s=60); agent.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from typing import Any

import numpy as np
import orjson
import redis

from features.definitions import FeatureView
from features.engine import FeatureEngine
from features.exceptions import RecordError
from features.records import parse_record
from features.state import EntityState
from features.store import SourcePosition, latest_key_for, state_key_for
from models.prediction import Prediction
from models.registry import Registry
from streams import codec
from streams.runtime.faust_app import AppThread, faust_app
from streams.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["NaiveFaustAgent", "model_row"]


def model_row(vector: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    """One ``(1, n_features)`` row in the model's column order (a missing feature is NaN).

    >>> model_row({"b": 2.0, "a": 1.0}, ("a", "b", "c")).tolist()
    [[1.0, 2.0, nan]]
    """
    return np.array([[vector.get(n, np.nan) for n in names]], dtype=np.float64)


class NaiveFaustAgent(AppThread):
    """A per-event Faust agent in its own thread and event loop; ``consumed`` counts records taken off the stream.

    ``start`` / ``stop`` / ``alive`` and ``error`` from :class:`streams.runtime.faust_app.AppThread`.
    """

    def __init__(self, settings: Settings, view: FeatureView, model: str, group: str, *,
                 threshold: float = 0.5, limit: int | None = None) -> None:
        super().__init__(f"naive-{group}")
        self.limit = limit  # bench bound: records past the first ``limit`` are skipped, not counted
        self.settings = settings
        self.view = view
        self.model = model
        self.group = group
        self.threshold = threshold
        self.consumed = 0
        self.scored = 0
        self.dead_lettered = 0
        # bench instrumentation (not part of the idiom): seconds in the body, in Redis calls, in predict_proba
        self.busy_s = self.redis_s = self.predict_s = 0.0

    def wait_consumed(self, n: int, timeout_s: float) -> int:
        """Block until ``n`` records were consumed, the agent died or ``timeout_s`` passed; the count."""
        deadline = time.time() + timeout_s
        while self.consumed < n and time.time() < deadline and self.alive:
            time.sleep(0.01)
        return self.consumed

    # -- the thread ------------------------------------------------------------------------------------------
    async def _main(self, aloop: asyncio.AbstractEventLoop) -> None:
        self._stopped = asyncio.Event()
        if self._stop.is_set():
            return
        registry = Registry(self.settings.registry_dir)
        production = registry.production(self.model)
        if production is None:
            raise RuntimeError(f"model {self.model!r} has no production version in {self.settings.registry_dir}")
        estimator = registry.load(self.model, production.version)
        r = redis.Redis.from_url(self.settings.redis_url)
        try:
            with tempfile.TemporaryDirectory(prefix="driftline-faust-naive-") as datadir:
                app = faust_app(self.settings, self.group, datadir=datadir, loop=aloop)
                self._define_agent(app, r, estimator, production.version, tuple(production.feature_names))
                await app.start()
                try:
                    while not self._stopped.is_set():
                        if getattr(app, "crash_reason", None) is not None:
                            raise RuntimeError(f"faust app crashed: {app.crash_reason!r}")
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stopped.wait(), 0.2)
                finally:
                    await app.stop()
        finally:
            r.close()

    def _define_agent(self, app: Any, r: redis.Redis, estimator: Any, version: int, names: tuple[str, ...]) -> None:
        """The agent itself: what a team writes in its ``app.py``."""
        view, group, model, threshold = self.view, self.group, self.model, self.threshold
        engine = FeatureEngine(view)
        watermarks: dict[int, int | None] = {}
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        source = app.topic(view.source_topic, **raw)
        predictions = app.topic(self.settings.topics.predictions, **raw)
        dlq = app.topic(self.settings.topics.dlq(view.source_topic), **raw)

        @app.agent(source, name=f"{group}-agent", concurrency=1)
        async def score(stream: Any) -> None:
            async for event in stream.events():
                if self.limit is not None and self.consumed >= self.limit:
                    continue
                self.consumed += 1
                started = time.perf_counter()
                msg = event.message
                try:
                    ev = parse_record(view, event.key, event.value)
                except RecordError as err:
                    self.dead_lettered += 1
                    await dlq.send(key=event.key, value=event.value, headers={"error": err.reason.encode()})
                    self.busy_s += time.perf_counter() - started
                    continue
                ev.offset, ev.partition = msg.offset, msg.partition
                pos = SourcePosition(group, view.source_topic, msg.partition)
                key = state_key_for(view, pos, ev.entity_id)
                t0 = time.perf_counter()
                stored = r.hgetall(key)
                self.redis_s += time.perf_counter() - t0
                state = EntityState.from_redis(stored, view)  # type: ignore[arg-type]
                result = engine.process({ev.entity_id: state}, [ev], watermark_ms=watermarks.get(msg.partition))
                watermarks[msg.partition] = result.watermark_ms
                if result.late:
                    self.dead_lettered += 1
                    await dlq.send(key=event.key, value=event.value,
                                   headers={"error": result.late[0][1].encode()})
                    self.busy_s += time.perf_counter() - started
                    continue
                _, vector = result.vectors[0]
                sets, dels = state.to_redis()
                pipe = r.pipeline(transaction=False)
                if sets:
                    pipe.hset(key, mapping=sets)  # type: ignore[arg-type]
                if dels:
                    pipe.hdel(key, *dels)
                pipe.pexpire(key, view.retention_ms)
                pipe.set(latest_key_for(view, pos, ev.entity_id), orjson.dumps({"as_of": ev.ts_ms, "f": vector}),
                         px=view.retention_ms)
                t0 = time.perf_counter()
                pipe.execute()
                t1 = time.perf_counter()
                p1 = float(estimator.predict_proba(model_row(vector, names))[0, 1])
                self.redis_s, self.predict_s = self.redis_s + t1 - t0, self.predict_s + time.perf_counter() - t1
                prediction = Prediction(
                    prediction_id=f"{view.source_topic}-{msg.partition}-{msg.offset}-champion",
                    entity_id=ev.entity_id, event_ts=ev.ts_ms, model=model, model_version=version,
                    variant="champion", score=p1, label=int(p1 >= threshold), scored_at=int(time.time() * 1000),
                    features=vector)
                await predictions.send(key=ev.entity_id.encode(), value=codec.encode(prediction.to_dict()))
                self.scored += 1
                self.busy_s += time.perf_counter() - started
