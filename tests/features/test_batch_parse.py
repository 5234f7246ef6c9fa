"""``batch_parser``: a batch of Kafka messages through the C parser in one call, the odd ones through ``parse`` one
by one (as the pipeline does), gives what the reference parser gives record by record: the same events in the
same order per partition with their offsets, the same rejections with the same reasons, the same offsets."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.definitions import FeatureView
from features.exceptions import RecordError
from features.record_parser import batch_parser, leave_all_to_parse, record_parser
from features.views import GPS_VIEW, VITALS_VIEW
from tests.budget import examples
from tests.streams.fake_message import FakeMessage

from .test_records_fast_path import parse_record, records_for, views


def _event(ev: Any) -> tuple:
    return (ev.entity_id, ev.ts_ms, [(k, type(v).__name__, repr(v)) for k, v in ev.values.items()], ev.offset,
            ev.partition)


def one_by_one(view: FeatureView, messages: list[FakeMessage], future: int) -> tuple:
    """The reference: every record through the reference parser, as the pipeline did before batches."""
    events: dict[int, list[tuple]] = {}
    rejected: list[tuple] = []
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for m in messages:
        partition, offset = m.partition(), m.offset()
        last[partition] = max(offset, last.get(partition, -1))
        first[partition] = min(offset, first.get(partition, offset))
        try:
            if m.key() is None:
                raise RecordError("key_mismatch", "no key")
            ev = parse_record(view, m.key(), m.value())
            if ev.ts_ms > future:
                raise RecordError("future", "ahead")
        except RecordError as exc:
            rejected.append((partition, offset, exc.reason, exc.detail if exc.reason != "key_mismatch" else ""))
            continue
        except Exception as exc:  # noqa: BLE001 - a huge number's OverflowError must come out the same
            rejected.append((partition, offset, type(exc).__name__, str(exc)))
            continue
        ev.offset, ev.partition = offset, partition
        events.setdefault(partition, []).append(_event(ev))
    return events, sorted(rejected), first, last


def batched(view: FeatureView, messages: list[FakeMessage], future: int, parse_batch: Any) -> tuple:
    """``parse_batch`` and then the odd messages through ``record_parser``, as ``FusedHandler.process`` does."""
    by_partition, first, last, odd = parse_batch(messages, future)
    parse = record_parser(view)
    rejected: list[tuple] = []
    reordered = set()
    for i in odd:
        m = messages[i]
        try:
            if m.key() is None:
                raise RecordError("key_mismatch", "no key")
            ev = parse(m.key(), m.value())
            if ev.ts_ms > future:
                raise RecordError("future", "ahead")
        except RecordError as exc:
            rejected.append((m.partition(), m.offset(), exc.reason, exc.detail if exc.reason != "key_mismatch" else ""))
            continue
        except Exception as exc:  # noqa: BLE001
            rejected.append((m.partition(), m.offset(), type(exc).__name__, str(exc)))
            continue
        ev.offset, ev.partition = m.offset(), m.partition()
        by_partition.setdefault(m.partition(), []).append(ev)
        reordered.add(m.partition())
    for p in reordered:  # only where an odd record was appended, as the pipeline does
        by_partition[p].sort(key=lambda e: e.offset)
    events = {p: [_event(e) for e in evs] for p, evs in by_partition.items()}
    return events, sorted(rejected), first, last


@st.composite
def batches(draw: st.DrawFn) -> tuple[FeatureView, list[FakeMessage], int]:
    view = draw(st.one_of(views(), st.sampled_from([VITALS_VIEW, GPS_VIEW])))
    offsets = [draw(st.integers(0, 10**6)) for _ in range(3)]
    messages = []
    for _ in range(draw(st.integers(0, 12))):
        key, value = draw(records_for(view))
        partition = draw(st.integers(0, 2))
        offsets[partition] += draw(st.integers(1, 3))
        messages.append(FakeMessage(view.source_topic, partition, offsets[partition], value, key))
    future = draw(st.sampled_from([2**62, 1_700_000_000_000, 0, 1_700_000_000_000 + 5_000]))
    return view, messages, future


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_a_batch_parses_as_its_records_one_by_one(case: tuple[FeatureView, list[FakeMessage], int]) -> None:
    view, messages, future = case
    expected = one_by_one(view, messages, future)
    assert batched(view, messages, future, batch_parser(view)) == expected
    assert batched(view, messages, future, leave_all_to_parse) == expected  # the pure-Python twin


def test_the_common_case_is_taken_in_c_and_the_rest_left_to_parse() -> None:
    good = (b'{"patient_id": "P1", "ts": 1700000000000, "hr": 61.0, "rr": 12.0, "spo2": 97.5, "temp": 36.5, '
            b'"sbp": 120.0, "dbp": 80.0}')
    messages = [FakeMessage("vitals", 0, 7, good, b"P1"), FakeMessage("vitals", 0, 8, b"{", b"P1"),
                FakeMessage("vitals", 1, 3, good, None), FakeMessage("vitals", 1, 2, good, b"P1")]
    got = batch_parser(VITALS_VIEW)(messages, 2**62)
    assert [(e.offset, e.partition) for e in got.events[0]] == [(7, 0)] and got.odd == [1, 2]
    assert got.first_offset == {0: 7, 1: 2} and got.last_offset == {0: 8, 1: 3}
    assert [(e.offset, e.partition) for e in got.events[1]] == [(2, 1)]
    assert batch_parser(VITALS_VIEW)(messages, 1_699_999_999_999).odd == [0, 1, 2, 3]  # past the clock: Python
