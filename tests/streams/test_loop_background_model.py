"""The loop's background checkpoints against a model of the log and the store (hypothesis): for any batch sizes,
any interleaving of saves that finish late, succeed or fail, the loop never commits past what the store holds,
never skips a record, and in the end has every record's state saved and committed."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.runtime.batch import BatchResult, Output
from streams.runtime.loop import BatchLoop

from .fake_message import FakeMessage
from .test_loop import FakeProducer

N = 40


class LogConsumer:
    """One partition of ``N`` records, read from a position that ``seek`` moves; batches of the drawn sizes."""

    def __init__(self, sizes: list[int]) -> None:
        self.position, self.sizes, self.commits = 0, sizes, []  # type: ignore[var-annotated]
        self._batch: list[FakeMessage] = []

    def subscribe(self, topics: list[str], **callbacks: object) -> None: ...
    def assignment(self) -> list: return []  # noqa: E704

    def poll(self, timeout: float) -> FakeMessage | None:
        size = self.sizes[self.position % len(self.sizes)]
        self._batch = [FakeMessage("src", 0, o, b"v%d" % o, b"k") for o in range(self.position,
                                                                                min(N, self.position + size))]
        self.position += len(self._batch)
        return self._batch.pop(0) if self._batch else None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        batch, self._batch = self._batch, []
        return batch

    def seek(self, tp: object) -> None:
        self.position = tp.offset  # type: ignore[attr-defined]

    def commit(self, *, offsets: list, asynchronous: bool) -> None:
        self.commits.append(offsets[0].offset)

    def close(self) -> None: ...


class SaveFuture(Future):
    """A background save: resolved by the test, or (as a real save would end by itself) when waited for, with
    the outcome drawn for it."""

    def __init__(self, handler: ModelHandler, offset: int, ok: bool) -> None:
        super().__init__()
        self.handler, self.offset, self.ok = handler, offset, ok

    def finish(self, ok: bool) -> None:
        if not self.done():
            if ok:
                self.handler.stored = max(self.handler.stored, self.offset)
                self.set_result(None)
            else:
                self.set_exception(redis.exceptions.ConnectionError("save failed"))

    def result(self, timeout: float | None = None) -> None:
        self.finish(self.ok)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.finish(self.ok)
        return super().exception(timeout)


class ModelHandler:
    """Applies offsets in memory; a checkpoint saves the highest applied one, in the loop or in the background
    (a Future the test resolves: success stores it, failure stores nothing)."""

    def __init__(self, outcomes: list[bool]) -> None:
        self.applied, self.stored, self.handled = -1, -1, set()  # type: ignore[var-annotated]
        self.saves: list[SaveFuture] = []
        self.outcomes = outcomes  # of the saves nobody resolves before they are waited for, in turn

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        assert messages[0].offset() <= self.applied + 1, "a record was skipped"
        self.applied = messages[-1].offset()
        self.handled.update(m.offset() for m in messages)
        return BatchResult([Output("out", m.value()) for m in messages], finalize=self.finalize, deferrable=True,
                           begin_finalize=self.begin)

    def finalize(self) -> None:
        self._wait()
        self.stored = self.applied

    def begin(self) -> Future[None]:
        self._wait()
        ok = self.outcomes[len(self.saves) % len(self.outcomes)]
        self.saves.append(SaveFuture(self, self.applied, ok))
        return self.saves[-1]

    def _wait(self) -> None:
        """Like PendingState: a load or save waits for the save before it, and raises its failure."""
        for future in self.saves:
            future.result()

    def resolve(self, ok: bool) -> None:
        for future in self.saves:
            if not future.done():
                future.finish(ok)
                return

    def rollback(self) -> None:
        for future in self.saves:
            future.exception()  # waited for, its failure forgotten (the loop learned it from its Future)
        self.saves.clear()
        self.applied = self.stored

    def on_assign(self, partitions: object) -> None: ...
    def on_revoke(self, partitions: object) -> None: ...


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 7), min_size=1, max_size=8),
       steps=st.lists(st.tuples(st.booleans(), st.sampled_from(["none", "ok", "fail"])), min_size=1, max_size=60),
       outcomes=st.lists(st.booleans(), min_size=1, max_size=6))
def test_commits_never_pass_the_store_and_every_record_is_saved_in_the_end(sizes: list[int], steps: list,
                                                                         outcomes: list[bool]) -> None:
    consumer, handler = LogConsumer(sizes), ModelHandler(outcomes)
    loop = BatchLoop(consumer, FakeProducer([]), handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01, checkpoint_interval_ms=60_000,
                     checkpoint_background=True)
    for due, outcome in steps:
        loop.ledger.interval_s = 1e-9 if due else 3600.0
        loop.run_once()
        if outcome != "none":
            handler.resolve(outcome == "ok")
        assert not consumer.commits or consumer.commits[-1] <= handler.stored + 1, "committed past the store"
    loop.ledger.interval_s = 1e-9
    handler.outcomes = [True]
    for _ in range(3 * N):  # drain with every save succeeding
        handler.resolve(True)
        loop.run_once()
        assert not consumer.commits or consumer.commits[-1] <= handler.stored + 1
    loop.stop()
    loop.run()  # shutdown: the last checkpoint, synchronously
    assert handler.handled == set(range(N)) and handler.stored == N - 1 and consumer.commits[-1] == N
