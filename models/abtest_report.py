"""Champion / challenger report: per-version outcome counts on joined labels → the two-proportion z-test verdict.

Pure: the monitor's Kafka edge feeds it served predictions (to learn which version is champion and which is
challenger in traffic) and joined outcomes (to count successes per version); :meth:`ABTracker.reports` returns
one :class:`ABReport` per model whose challenger served recently.

What counts as a success is the ``outcome`` rule, always "higher is better":

- ``correct``: every joined label is a trial; a success when the served label equals the true label.
- ``precision``: trials are predictions of 1; a success when the true label is 1 ("label==1 when predicted 1").
- ``recall``: trials are true labels of 1; a success when the prediction was 1.

Example (challenger right 90 times in 100, champion 70 in 100):
    >>> t = ABTracker(min_n=30)
    >>> t.observe_roles([("risk", 1, "champion"), ("risk", 2, "challenger")], now_ms=0)
    >>> for version, right in ((1, 70), (2, 90)):
    ...     t.observe_outcomes([("risk", version, 0, 1)] * right + [("risk", version, 1, 1)] * (100 - right))
    >>> r = t.reports(now_ms=1)[0]
    >>> (r.champion, r.challenger, r.champion_n, r.challenger_successes, r.verdict)
    (1, 2, 100, 90, 'better')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from models.abtest import two_proportion_ztest
from models.exceptions import ABTestError

__all__ = ["OUTCOMES", "OutcomeRule", "ArmCounts", "ABReport", "ab_report", "success_of", "ABTracker"]

OutcomeRule = Literal["correct", "precision", "recall"]
OUTCOMES: tuple[str, ...] = ("correct", "precision", "recall")


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """Successes out of trials for one model version under one outcome rule."""

    version: int
    successes: int = 0
    trials: int = 0

    @property
    def rate(self) -> float:
        """Success rate, NaN without trials.

        >>> ArmCounts(1, 3, 4).rate, math.isnan(ArmCounts(1).rate)
        (0.75, True)
        """
        return self.successes / self.trials if self.trials else math.nan


@dataclass(frozen=True)
class ABReport:
    """The verdict on ``challenger`` against ``champion`` of ``model`` (``lift`` = challenger rate - champion rate)."""

    model: str
    champion: int
    challenger: int
    outcome: str
    champion_successes: int
    champion_n: int
    challenger_successes: int
    challenger_n: int
    z: float
    p_value: float
    lift: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for logs, snapshots and ``/health``)."""
        return asdict(self)

    @property
    def summary(self) -> str:
        """One log line.

        >>> ab_report("m", ArmCounts(1, 50, 100), ArmCounts(2, 80, 100)).summary
        'A/B m: challenger v2 vs champion v1 on correct: 80/100 vs 50/100, z=4.447, p=8.7e-06 -> better'
        """
        return (f"A/B {self.model}: challenger v{self.challenger} vs champion v{self.champion} on {self.outcome}: "
                f"{self.challenger_successes}/{self.challenger_n} vs {self.champion_successes}/{self.champion_n}, "
                f"z={self.z:.3f}, p={self.p_value:.2g} -> {self.verdict}")


def ab_report(model: str, champion: ArmCounts, challenger: ArmCounts, *, outcome: str = "correct",
              alpha: float = 0.05, min_n: int = 30) -> ABReport:
    """:func:`models.abtest.two_proportion_ztest` of ``challenger`` against ``champion`` as an :class:`ABReport`.

    >>> r = ab_report("m", ArmCounts(1, 90, 100), ArmCounts(2, 70, 100))
    >>> r.verdict, round(r.lift, 2)
    ('worse', -0.2)
    >>> ab_report("m", ArmCounts(1, 9, 10), ArmCounts(2, 1, 10)).verdict   # below min_n: no verdict
    'undecided'
    """
    if outcome not in OUTCOMES:
        raise ABTestError(f"unknown outcome rule {outcome!r}; use one of {OUTCOMES}")
    t = two_proportion_ztest(champion.successes, champion.trials, challenger.successes, challenger.trials,
                             alpha=alpha, min_n=min_n)
    return ABReport(model, champion.version, challenger.version, outcome, champion.successes, champion.trials,
                    challenger.successes, challenger.trials, t.z, t.p_value, t.lift, t.verdict)


def success_of(outcome: str, predicted: int, label: int) -> bool | None:
    """Whether one joined label is a success under ``outcome``; ``None`` when it is not a trial of that rule.

    >>> [success_of("correct", 1, 0), success_of("precision", 1, 1), success_of("precision", 0, 1)]
    [False, True, None]
    >>> [success_of("recall", 0, 1), success_of("recall", 1, 0)]
    [False, None]
    """
    if outcome == "correct":
        return predicted == label
    if outcome == "precision":
        return None if predicted != 1 else label == 1
    if outcome == "recall":
        return None if label != 1 else predicted == 1
    raise ABTestError(f"unknown outcome rule {outcome!r}; use one of {OUTCOMES}")


class ABTracker:
    """Who is champion / challenger per model (from served predictions) and per-version outcome counts.

    A challenger is "in traffic" while it served a prediction within the last ``active_ms``. Counts are since
    the tracker started (the monitor's lifetime): a version's arm keeps accumulating across promotions.
    """

    def __init__(self, outcome: str = "correct", *, alpha: float = 0.05, min_n: int = 30,
                 active_ms: int = 10 * 60 * 1000) -> None:
        if outcome not in OUTCOMES:
            raise ABTestError(f"unknown outcome rule {outcome!r}; use one of {OUTCOMES}")
        self.outcome, self.alpha, self.min_n, self.active_ms = outcome, alpha, min_n, active_ms
        self._champion: dict[str, int] = {}
        self._challenger: dict[str, tuple[int, int]] = {}  # model -> (version, last served at ms)
        self._counts: dict[tuple[str, int], list[int]] = {}  # (model, version) -> [successes, trials]

    def observe_roles(self, served: Iterable[tuple[str, int, str]], now_ms: int) -> None:
        """``(model, version, variant)`` of served predictions; other variants (shadow, fallback) are ignored."""
        for model, version, variant in served:
            if variant == "champion":
                if self._champion.get(model) != version:
                    self._champion[model] = version
                    ch = self._challenger.get(model)
                    if ch is not None and ch[0] == version:  # the challenger was promoted: no pair until next one
                        del self._challenger[model]
            elif variant == "challenger":
                self._challenger[model] = (version, now_ms)

    def observe_outcomes(self, outcomes: Iterable[tuple[Any, ...]]) -> None:
        """Joined labels as ``(model, version, error, label)`` (``label`` None: only the ``correct`` rule counts)."""
        for o in outcomes:
            model, version, error = str(o[0]), int(o[1]), int(o[2])
            label = o[3] if len(o) > 3 else None
            if label is None:
                if self.outcome != "correct":
                    continue
                ok: bool | None = error == 0
            else:
                label = int(label)
                ok = success_of(self.outcome, label if error == 0 else 1 - label, label)
            if ok is None:
                continue
            c = self._counts.setdefault((model, version), [0, 0])
            c[0] += int(ok)
            c[1] += 1

    def arm(self, model: str, version: int) -> ArmCounts:
        """Counts of one version so far.

        >>> ABTracker().arm("m", 3)
        ArmCounts(version=3, successes=0, trials=0)
        """
        s, n = self._counts.get((model, version), (0, 0))
        return ArmCounts(version, s, n)

    def pairs(self, now_ms: int) -> list[tuple[str, int, int]]:
        """``(model, champion, challenger)`` for every model with a challenger in traffic."""
        out = []
        for model, (challenger, seen) in sorted(self._challenger.items()):
            champion = self._champion.get(model)
            if champion is not None and champion != challenger and now_ms - seen <= self.active_ms:
                out.append((model, champion, challenger))
        return out

    def reports(self, now_ms: int) -> list[ABReport]:
        """One report per model with a challenger in traffic."""
        return [ab_report(model, self.arm(model, champion), self.arm(model, challenger), outcome=self.outcome,
                          alpha=self.alpha, min_n=self.min_n) for model, champion, challenger in self.pairs(now_ms)]
