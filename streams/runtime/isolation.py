"""Per-record fault isolation around a batch handler: no single record can stall a stage.

Two kinds of failure end a batch, and they are told apart by the exception's class (:func:`is_infrastructure`):

* an **infrastructure fault** (Redis, the broker, a delivery the broker did not acknowledge, another writer's
  offset in the store, the model registry's files, the network): the record is not to blame, so the whole
  batch is retried (the loop rewinds and backs off) and nothing is dead-lettered;
* anything else is a **record-level fault**: one (or a few) records made the handler raise where nothing
  foresaw it. :func:`run_isolated` then bisects: it handles the batch's first half and its second half as two
  batches of their own (each processed, delivered and finalized before the next, so the order per partition is
  kept and what one half saved the next half sees), and so on down, until a record fails alone. That record is
  dead-lettered with reason ``poison`` (see ``poison_detail``) and every other record is handled once.

The handlers' own validation (``features.records``, the monitor's record checks) turns every *foreseen* bad
record into a dead letter without raising; this is the safety net for the rest. Halves are contiguous slices
of the batch, so handling them one after the other is exactly handling smaller batches: a good record is
neither dropped nor handled twice, unless a half's *delivery* failed after some of its outputs went out (then
those outputs are produced again, with the same ids: identifiable duplicates, as after a crash).

Example:
    >>> delivered, poisoned = [], []
    >>> def process(batch):
    ...     if 13 in batch:
    ...         raise ZeroDivisionError("division by zero")
    ...     return list(batch)
    >>> run_isolated(list(range(20)), process, delivered.extend, lambda r, exc: poisoned.append(r) or [])
    1
    >>> poisoned, sorted(delivered) == [r for r in range(20) if r != 13]
    ([13], True)
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import TypeVar

import redis
from confluent_kafka import KafkaError, KafkaException
from redis.exceptions import RedisClusterException

from features.exceptions import StaleOffsetError
from models.exceptions import ModelError
from streams.exceptions import ControlStoreError, DriftlineError, InfrastructureError

log = logging.getLogger(__name__)

R = TypeVar("R")  # a record
B = TypeVar("B")  # what ``process`` returns and ``deliver`` takes

INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    InfrastructureError,  # e.g. streams.runtime.batch.DeliveryError: the broker did not acknowledge an output
    redis.RedisError, RedisClusterException,  # Redis down, timing out, loading, read-only, failing over...
    KafkaException,  # the broker (a produce the client refused, a commit)
    StaleOffsetError,  # another writer saved this partition first: reload and redo the batch
    ControlStoreError,  # the control plane's Redis
    ModelError,  # the registry's files (a missing or tampered artifact): not the record's fault
    OSError,  # sockets, files, timeouts (ConnectionError, TimeoutError, BrokenPipeError...)
    MemoryError,
)


# librdkafka / broker answers about one message, not about the broker: too large, invalid (bad header, ...)
RECORD_LEVEL_KAFKA_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                                       KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                                       KafkaError._INVALID_ARG, KafkaError._BAD_MSG})


class RefusedRecordError(DriftlineError):
    """The broker (or the producer) refused an output for what it is (too large, invalid), not for being down:
    a record-level fault, isolated like any other."""


def is_infrastructure(exc: BaseException) -> bool:
    """True for a fault of a dependency (retry the batch), False for a fault one record can cause.

    >>> is_infrastructure(redis.ConnectionError("Connection refused")), is_infrastructure(OverflowError())
    (True, False)
    >>> is_infrastructure(UnicodeEncodeError("utf-8", "\\ud800", 0, 1, "surrogates not allowed"))
    False
    >>> is_infrastructure(KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))  # produce() refused one
    False
    """
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code() not in RECORD_LEVEL_KAFKA_ERRORS
    return isinstance(exc, INFRASTRUCTURE)


def dependency_of(exc: BaseException) -> str | None:
    """The dependency an infrastructure fault names, for ``/health`` (None: not an infrastructure fault).

    >>> dependency_of(redis.ResponseError("OOM command not allowed")), dependency_of(KafkaException("x"))
    ('redis', 'broker')
    """
    if isinstance(exc, redis.RedisError | RedisClusterException | ControlStoreError | StaleOffsetError):
        return "redis"
    if isinstance(exc, KafkaException) or type(exc).__name__ == "DeliveryError":
        return "broker"
    if isinstance(exc, ModelError):
        return "model registry"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, InfrastructureError | OSError):
        return "network"
    return None


def poison_detail(exc: BaseException) -> str:
    """The traceback's last line (``Class: message``) and where it was raised, for the dead letter's detail.

    >>> try:
    ...     int("x")
    ... except ValueError as exc:
    ...     poison_detail(exc).split(" (at ")[0]
    "ValueError: invalid literal for int() with base 10: 'x'"
    """
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    if frames:
        f = frames[-1]
        last += f" (at {'/'.join(PurePath(f.filename).parts[-2:])}:{f.lineno} in {f.name})"
    return last


def run_isolated(records: Sequence[R], process: Callable[[Sequence[R]], B], deliver: Callable[[B], None],
                 poison: Callable[..., B]) -> int:
    """``deliver(process(records))``; when that raises a record-level fault, bisect (see the module docstring)
    and ``deliver(poison(record, exc))`` for each record that fails alone (``poison(record, exc, bare=True)``,
    headers without the record's bytes, when even that copy is refused). Infrastructure faults propagate (the
    caller retries the batch). Returns the number of poison records."""
    try:
        deliver(process(records))
        return 0
    except Exception as exc:  # noqa: BLE001 - classified right here
        if is_infrastructure(exc):
            raise
        if len(records) == 1:
            log.error("poison record: %s failed alone with %s; dead-lettered", _describe(records[0]),
                      poison_detail(exc))
            try:
                deliver(poison(records[0], exc))
            except Exception as again:  # noqa: BLE001 - even its copy was refused (a topic limit below ours)
                if is_infrastructure(again):
                    raise
                deliver(poison(records[0], again, bare=True))  # type: ignore[call-arg] - headers only
            return 1
        log.warning("batch of %d records failed with %s: isolating the culprit", len(records),
                    traceback.format_exception_only(type(exc), exc)[-1].strip())
    mid = len(records) // 2
    return (run_isolated(records[:mid], process, deliver, poison)
            + run_isolated(records[mid:], process, deliver, poison))


def _describe(m: object) -> str:
    try:
        return f"{m.topic()}[{m.partition()}]@{m.offset()}"  # type: ignore[attr-defined]
    except AttributeError:
        return repr(m)[:80]
