"""Pipelined ``EVALSHA`` calls packed by hiredis in one pass, for a single (non-cluster) Redis.

A save sends ~10 script arguments per entity; redis-py's pipeline packs each one through its Python encoder
(``isinstance`` checks and an ``encode`` call per argument), which was a third of a checkpoint's CPU at 100,000
entities. :func:`pack_evalsha` hands each call's whole argument tuple to ``hiredis.pack_command`` (C), and
:func:`start_packed_many` writes all of a checkpoint's calls on one pooled connection: the same bytes on the wire as
redis-py's pipeline (``tests/features/test_save_args_wire.py``), the same answers (a reply error is returned in its
place, as ``pipeline.execute(raise_on_error=False)`` does), and the client's retry policy on a connection error.

A Redis Cluster client, or a machine without hiredis, keeps redis-py's pipeline (:func:`packable`).

Example:
    >>> packable(object())
    False
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis

try:
    from hiredis import pack_command
except ImportError:  # redis-py without its hiredis extra: its own pipeline serves
    pack_command = None

_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def packable(client: object) -> bool:
    """Whether :func:`start_packed_many` serves ``client``: a single Redis (not a cluster), hiredis installed."""
    return pack_command is not None and type(client) is redis.Redis


def pack_evalsha(sha: str, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """The wire bytes of ``EVALSHA sha len(keys) *keys *args`` (bytes, str and int arguments)."""
    return pack_command(("EVALSHA", sha, len(keys), *keys, *args))


def start_packed_many(client: redis.Redis, packed: Sequence[bytes], *,
                      background: bool = True) -> Callable[[], list[Any]]:
    """Packed ``EVALSHA`` calls (:func:`pack_evalsha`, ``features.save_wire``) written on one connection now, by a
    thread of their own (``background``; else right here); the returned function reads their answers in order, a
    reply error (``NOSCRIPT``, a script error) in its place, as ``pipeline.execute(raise_on_error=False)`` does.
    Call it exactly once.

    Redis reads a call whole before it runs it, and reads nothing more while it runs it: the write of a
    checkpoint's later calls waits for the earlier ones to run, and the thread lets that wait overlap the caller's
    work (the GIL is released in ``sendall``). The connection stays out of the pool until the answers are read, so
    other commands of the client go on other connections. A connection error, when writing or reading, disconnects
    and writes them all again under the client's retry policy (as redis-py's pipeline retries), then raises."""
    pool = client.connection_pool
    conn = pool.get_connection()
    written: list[BaseException | None] = []  # the writer's outcome: None (written) or what it raised
    attempts = 0

    def write() -> None:
        try:
            conn.send_packed_command(packed)
            written.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which writes again or raises it
            written.append(exc)

    writer = threading.Thread(target=write, name="driftline-save-writer", daemon=True) if background else None
    if writer is not None:
        writer.start()
    else:
        write()

    def attempt() -> list[Any]:
        nonlocal attempts
        if writer is not None:
            writer.join()
        attempts += 1
        failed = written[0]
        if attempts == 1 and failed is not None and not isinstance(failed, _CONNECTION_ERRORS):
            raise failed
        if attempts > 1 or failed is not None:  # a retry, or the writer lost the connection: write them here
            conn.send_packed_command(packed)
        answers: list[Any] = []
        for _ in packed:
            try:
                answers.append(conn.read_response())
            except redis.exceptions.ResponseError as exc:
                answers.append(exc)
        return answers

    def answers() -> list[Any]:
        try:
            return conn.retry.call_with_retry(attempt, lambda _error: conn.disconnect())
        except BaseException:
            conn.disconnect()  # answers may be left unread on it: never hand it back half-read
            raise
        finally:
            pool.release(conn)

    return answers
