"""Aggregations at their edges: written to kill the mutants ``make mutation`` found alive."""

from __future__ import annotations

import math

from features.aggregations import AGGREGATIONS, add_number, fold, new_accumulator, new_partial


def window(values: list[tuple[int, float]]) -> list:
    p = new_partial()
    for ts, x in values:
        add_number(p, 0, ts, x, True)
    acc = new_accumulator(False)
    fold(acc, p, 0, 0, True)
    return acc


def test_values_at_one_instant_have_no_rate_and_no_slope() -> None:
    acc = window([(5_000, 10.0), (5_000, 350.0), (5_000, 90.0)])
    assert math.isnan(AGGREGATIONS["angle_change_rate"].result(acc))
    assert math.isnan(AGGREGATIONS["slope"].result(acc))
    assert AGGREGATIONS["integral"].result(acc) == 0.0 and AGGREGATIONS["count"].result(acc) == 3.0


def test_an_empty_window_counts_zero_distinct_values_with_or_without_a_value_set() -> None:
    for distinct in (False, True):
        assert AGGREGATIONS["distinct_count"].result(new_accumulator(distinct)) == 0.0
        assert AGGREGATIONS["sum"].result(new_accumulator(distinct)) == 0.0
