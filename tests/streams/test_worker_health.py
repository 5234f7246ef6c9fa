"""``Worker.health()`` answers from one reading of the loop's failure count, while the loop's thread changes it.

CI caught a torn answer: ``failing: redis`` and ``healthy: false`` beside ``consecutive_failures: 0``, because the
count was read again for each field while the first failure was being recorded."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from streams.runtime.batch import LoopHealth
from streams.runtime.workers import Worker


class ChangingHealth(LoopHealth):
    """A LoopHealth whose failure count moves through ``counts`` on every read (another thread writing)."""

    def __init__(self, counts: list[int]) -> None:
        super().__init__(failing="redis", last_error="OutOfMemoryError: OOM", last_error_class="OutOfMemoryError")
        object.__setattr__(self, "_counts", list(counts))

    def __getattribute__(self, name: str):  # noqa: ANN204
        if name == "consecutive_failures":
            counts = object.__getattribute__(self, "_counts")
            return counts.pop(0) if len(counts) > 1 else counts[0]
        return object.__getattribute__(self, name)


def worker_over(health: LoopHealth) -> Worker:
    health.last_poll_at = __import__("time").time()
    loop = SimpleNamespace(health=health)
    worker = Worker("pipeline-vitals", loop, probes={"redis": lambda: "ok", "broker": lambda: "ok"})  # type: ignore[arg-type]
    worker.thread = SimpleNamespace(is_alive=lambda: True)  # type: ignore[assignment]
    return worker


@given(st.lists(st.integers(0, 3), min_size=1, max_size=8))
def test_every_field_of_one_answer_agrees_on_the_failure_count(counts: list[int]) -> None:
    state = worker_over(ChangingHealth(counts)).health()
    failures = state["consecutive_failures"]
    assert state["healthy"] is (failures == 0)
    assert (state["failing"] == "redis") is (failures > 0)
    assert state["redis"] == ("ok" if failures == 0 else "failing: OutOfMemoryError: OOM")


def test_a_settled_loop_is_healthy_and_a_failing_one_names_its_dependency() -> None:
    assert worker_over(LoopHealth()).health()["healthy"] is True
    failing = worker_over(LoopHealth(consecutive_failures=2, failing="redis", last_error="X: y")).health()
    assert failing["healthy"] is False and failing["failing"] == "redis" and failing["redis"] == "failing: X: y"
