"""Detection benchmark: the monitor's whole concept-drift policy next to bare river ``ADWIN()`` and ``DDM()`` on
error streams with several changes, in the same run.

Streams (``bench.detection_streams``): prequential 0/1 errors of a river ``HoeffdingTreeClassifier`` on SEA and
Agrawal streams with three changes each (sudden, width 1, and gradual, width 5,000; 100k events), Bernoulli streams
whose error rate rises three times, and stationary streams (trees and Bernoulli, 100k events); several seeds each.

Detectors, all fed the same error streams:

- ``river ADWIN()`` and ``river DDM()`` with river's defaults: every ``drift_detected`` is an alarm;
- ``ADWIN or DDM``: both paging independently (the union of their alarms: what adds false alarms up);
- ``policy: pages``: the whole :class:`~monitor.drift_monitor.DriftMonitor` (``on_outcomes`` in batches of 100, its
  default settings): an alarm is an *opened* incident (updates and escalations of an open incident page nobody);
- ``policy: critical``: when the policy's verdict becomes critical (what a rollback acts on).

Definitions (in the table's notes too): a change *starts* at its onset (the change point; for a gradual change,
point - width / 2). It is **detected** when an alarm falls in ``[onset, min(onset + 10,000, next onset))``, with the
delay from the onset to the first such alarm. Every alarm outside all those windows is a **false alarm** (before
the first change, more than 10,000 events after an onset, and anywhere on a stationary stream); further alarms
inside a window are **repeats**. False alarms are per 100k events of the family's streams.

The warm-up table replays the detector events recorded once per stream (a version monitor without warm-up)
through the real ``DriftMonitor`` incident logic with each warm-up length (a warm-up only hides detections, the
detectors are unchanged by it); the smoke test checks that the replay at the default equals the full run.

Run: ``python -m bench.detection_bench [--tiny] [--json] [--seeds N] [--cache DIR] [--no-shift]``. The tree
streams take a few minutes to generate and are cached (default ``.driftline/bench-cache``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from river.drift import ADWIN
from river.drift.binary import DDM

from bench import detection_shift
from bench.common import Table
from bench.detection_streams import Family, error_stream, families
from monitor.drift_monitor import DriftMonitor
from monitor.reference import ReferenceProfile
from monitor.version_monitor import MonitorConfig, Signal, VersionMonitor

HORIZON = 10_000
BATCH = 100
WARMUPS = (0, 250, 500, 1_000, 2_000, 5_000)
DEFAULT_WARMUP = MonitorConfig().detector_warmup
DETECTORS = ("river ADWIN()", "river DDM()", "ADWIN or DDM", "policy: pages", "policy: critical")
CACHE = Path(".driftline/bench-cache")


@dataclass
class Score:
    """How one detector did on the streams of one family (summed over seeds)."""

    detected: int = 0
    changes: int = 0
    delays: list[int] = field(default_factory=list)
    false_alarms: int = 0
    repeats: int = 0
    events: int = 0

    def add(self, alarms: list[int], fam: Family, horizon: int = HORIZON) -> None:
        """Score ``alarms`` (event indices) on one stream of ``fam``."""
        onsets = fam.onsets
        ends = [*onsets[1:], fam.n]
        windows = [(s, min(s + horizon, nxt)) for s, nxt in zip(onsets, ends[:len(onsets)], strict=True)]
        hit = [False] * len(windows)
        for a in sorted(alarms):
            k = next((j for j, (lo, hi) in enumerate(windows) if lo <= a < hi), None)
            if k is None:
                self.false_alarms += 1
            elif hit[k]:
                self.repeats += 1
            else:
                hit[k] = True
                self.delays.append(a - windows[k][0])
        self.detected += sum(hit)
        self.changes += len(windows)
        self.events += fam.n

    @property
    def fa_per_100k(self) -> float:
        return round(self.false_alarms * 100_000 / self.events, 2) if self.events else 0.0

    @property
    def median_delay(self) -> float | None:
        return statistics.median(self.delays) if self.delays else None


def _profile() -> ReferenceProfile:
    x = np.random.default_rng(12345).normal(size=(2000, 1))
    return ReferenceProfile.from_training(x, ["x"], scores=1.0 / (1.0 + np.exp(-x[:, 0])), bins=10)


def bare(errors: np.ndarray, detector: ADWIN | DDM) -> list[int]:
    """Indices at which a bare river detector fires."""
    out = []
    for i, e in enumerate(errors.tolist()):
        detector.update(e)
        if detector.drift_detected:
            out.append(i)
    return out


def _alarms(alerts: list[Any]) -> tuple[list[int], list[int]]:
    """(pages, criticals) as event indices, from the policy's concept-drift alerts."""
    pages, criticals = [], []
    for a in alerts:
        inc = a.details.get("incident") if a.kind == "concept_drift" and a.action == "trigger" else None
        if inc is None:
            continue
        if inc["change"] == "opened":
            pages.append(inc["opened_at_event"] - 1)
        if a.severity == "critical" and inc["change"] in ("opened", "escalated"):
            criticals.append(inc["last_detection_at_event"] - 1)
    return pages, criticals


def run_policy(errors: np.ndarray, prof: ReferenceProfile, warmup: int = DEFAULT_WARMUP) -> tuple[list[int], list[int]]:
    """The whole monitor on one error stream: (page indices, critical indices)."""
    mon = DriftMonitor(lambda m, v: prof, config=MonitorConfig(ks=False, js=False, detector_warmup=warmup))
    outcomes = [("m", 1, int(e)) for e in errors.tolist()]
    alerts = []
    for start in range(0, len(outcomes), BATCH):
        alerts += mon.on_outcomes(outcomes[start:start + BATCH], now_ms=start + BATCH)
    return _alarms(alerts)


@dataclass
class _ReplayWindow:
    """Stands in for a version monitor's outcome window during a replay (what the incident logic reads)."""

    size: int
    n: int = 0
    accuracy: float = float("nan")
    auc: float = float("nan")


def record(errors: np.ndarray, prof: ReferenceProfile) -> list[tuple[int, float, list[Signal]]]:
    """Per batch of outcomes: (outcomes so far, rolling accuracy, detector events) of a monitor without warm-up."""
    vm = VersionMonitor("m", 1, prof, MonitorConfig(ks=False, js=False, detector_warmup=0))
    out = []
    for start in range(0, len(errors), BATCH):
        for e in errors[start:start + BATCH].tolist():
            vm.observe_outcome(e)
        out.append((vm.outcomes, vm.outcome_window.accuracy, vm.take_events()))
    return out


def replay(recording: list[tuple[int, float, list[Signal]]], prof: ReferenceProfile,
           warmup: int) -> tuple[list[int], list[int]]:
    """The recorded detector events through the real incident logic, with detections of the first ``warmup``
    outcomes hidden (as ``MonitorConfig.detector_warmup`` does)."""
    cfg = MonitorConfig(ks=False, js=False, detector_warmup=warmup)
    mon = DriftMonitor(lambda m, v: prof, config=cfg)
    vm = mon.monitor_for("m", 1)
    window = _ReplayWindow(cfg.outcome_window)
    vm.outcome_window = window  # type: ignore[assignment]
    alerts = []
    for outcomes, accuracy, events in recording:
        vm.outcomes = outcomes
        window.n, window.accuracy = min(outcomes, window.size), accuracy
        alerts += mon._alerts(vm, [s for s in events if s.n > warmup], now_ms=outcomes)  # the monitor's own path
    return _alarms(alerts)


def multi_change(tiny: bool = False, seeds: int | None = None, cache: Path | None = CACHE
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows per family and detector, target rows, warm-up rows)."""
    prof = _profile()
    fams = families(tiny, seeds)
    scores = {(f.name, d): Score() for f in fams for d in DETECTORS}
    sweep = {(w, kind, st): Score() for w in WARMUPS for kind in ("pages", "critical") for st in (False, True)}
    for fam in fams:
        for seed in range(fam.seeds):
            errors = error_stream(fam, seed, cache)
            adwin, ddm = bare(errors, ADWIN()), bare(errors, DDM())
            pages, criticals = run_policy(errors, prof)
            alarms = {"river ADWIN()": adwin, "river DDM()": ddm, "ADWIN or DDM": sorted(set(adwin) | set(ddm)),
                      "policy: pages": pages, "policy: critical": criticals}
            for det, found in alarms.items():
                scores[fam.name, det].add(found, fam)
            rec = record(errors, prof)
            for w in WARMUPS:
                p, c = replay(rec, prof, w)
                sweep[w, "pages", fam.stationary].add(p, fam)
                sweep[w, "critical", fam.stationary].add(c, fam)
    rows = [_row(fam, det, scores[fam.name, det]) for fam in fams for det in DETECTORS]
    warm = [{"warmup": w, "stationary_pages_per_100k": sweep[w, "pages", True].fa_per_100k,
             "stationary_critical_per_100k": sweep[w, "critical", True].fa_per_100k,
             "change_streams_false_pages_per_100k": sweep[w, "pages", False].fa_per_100k,
             "detected": f"{sweep[w, 'pages', False].detected}/{sweep[w, 'pages', False].changes}",
             "median_delay": sweep[w, "pages", False].median_delay} for w in WARMUPS]
    return rows, _targets(fams, scores), warm


def _row(fam: Family, det: str, s: Score) -> dict[str, Any]:
    return {"family": fam.name, "detector": det, "seeds": fam.seeds,
            "detected": None if fam.stationary else f"{s.detected}/{s.changes}",
            "median_delay": s.median_delay, "false_alarms_per_100k": s.fa_per_100k,
            "repeats": None if fam.stationary else s.repeats}


def _pool(fams: list[Family], scores: dict[tuple[str, str], Score], det: str, stationary: bool) -> Score:
    out = Score()
    for s in (scores[f.name, det] for f in fams if f.stationary == stationary):
        out.detected += s.detected
        out.changes += s.changes
        out.delays += s.delays
        out.false_alarms += s.false_alarms
        out.repeats += s.repeats
        out.events += s.events
    return out


def _targets(fams: list[Family], scores: dict[tuple[str, str], Score]) -> list[dict[str, Any]]:
    ch = {d: _pool(fams, scores, d, False) for d in DETECTORS}
    st = {d: _pool(fams, scores, d, True) for d in DETECTORS}
    a, p = ch["river ADWIN()"], ch["policy: pages"]
    ratio = round(p.median_delay / a.median_delay, 2) if a.median_delay and p.median_delay is not None else None
    sum_fa = round(st["river ADWIN()"].fa_per_100k + st["river DDM()"].fa_per_100k, 2)
    return [
        {"what": "changes detected, all change families", "river ADWIN()": f"{a.detected}/{a.changes}",
         "policy": f"{p.detected}/{p.changes}", "target": ">= ADWIN's", "met": p.detected >= a.detected},
        {"what": "false alarms /100k on the stationary streams (pages)",
         "river ADWIN()": st["river ADWIN()"].fa_per_100k, "policy": st["policy: pages"].fa_per_100k,
         "target": "<= 0.5", "met": st["policy: pages"].fa_per_100k <= 0.5},
        {"what": "median delay (events) on the change families", "river ADWIN()": a.median_delay,
         "policy": p.median_delay, "target": f"<= 1.25x ADWIN's (here {ratio}x)",
         "met": ratio is not None and ratio <= 1.25},
        {"what": "stationary false alarms /100k: ADWIN + DDM summed, then ADWIN or DDM paging / policy critical",
         "river ADWIN()": sum_fa, "policy": f"{st['ADWIN or DDM'].fa_per_100k} / {st['policy: critical'].fa_per_100k}",
         "target": "not the sum", "met": st["policy: critical"].fa_per_100k < sum_fa or sum_fa == 0},
    ]


def run(tiny: bool = False, seeds: int | None = None, cache: Path | None = CACHE, shift: bool = True
        ) -> dict[str, Any]:
    """Every table's rows as plain data."""
    t0 = time.perf_counter()
    rows, targets, warm = multi_change(tiny, seeds, None if tiny else cache)
    fams = families(tiny, seeds)
    out: dict[str, Any] = {"families": [{"name": f.name, "n": f.n, "seeds": f.seeds, "width": f.width,
                                         "changes": list(f.changes)} for f in fams],
                           "horizon": HORIZON, "multi_change": rows, "targets": targets, "warmup": warm,
                           "multi_change_s": round(time.perf_counter() - t0, 1)}
    if shift:
        sizes = detection_shift.SMALL if tiny else detection_shift.Sizes()
        if seeds:
            sizes = detection_shift.Sizes(**{**sizes.__dict__, "seeds": seeds})
        out.update(sizes=sizes.__dict__, quality=detection_shift.quality(sizes), speed=detection_shift.speed(sizes))
    return out


NOTES = [f"detected: an alarm in [onset, min(onset + {HORIZON:,}, next onset)); the onset is the change point, "
         "minus half the width for a gradual change; delay: from the onset to the first such alarm (events). "
         "false alarm: any alarm outside those windows (before the first change, later than the horizon, anywhere "
         "on a stationary stream), per 100k events; repeats: further alarms inside a window.",
         "river ADWIN() / DDM(): river's defaults, every drift_detected is an alarm; ADWIN or DDM: both paging "
         "independently; policy: the whole DriftMonitor (on_outcomes, batches of 100, default settings): pages = "
         "opened incidents (ADWIN on errors detecting an increase), critical = confirmed by DDM within "
         "confirm_within outcomes (what a rollback acts on)."]


def as_tables(result: dict[str, Any]) -> list[Table]:
    """``run()``'s result as the runner's tables."""
    fams = result["families"]
    desc = "; ".join(f"{f['name']} {f['seeds']} seeds" for f in fams)
    cols = ["family", "detector", "seeds", "detected", "median_delay", "false_alarms_per_100k", "repeats"]
    tables = [
        Table("detection", "Multi-change error streams: the policy next to bare river ADWIN() and DDM()",
              ["family", "detector", "seeds", "changes detected", "median delay", "false alarms /100k", "repeats"],
              [[r[c] for c in cols] for r in result["multi_change"]],
              notes=[f"{fams[0]['n']:,} events per stream, changes at {fams[0]['changes']}; {desc}.", *NOTES],
              limit="limit: the error stream itself: a change the learner's error does not show (or shows by a "
                    "few percent) is invisible to every detector; ADWIN needs a window of evidence before it cuts."),
        Table("detection", "Against the targets (pooled over families)", ["what", "river ADWIN()", "policy", "target",
                                                                            "met"],
              [[r["what"], r["river ADWIN()"], r["policy"], r["target"], "yes" if r["met"] else "**no**"]
               for r in result["targets"]]),
        Table("detection", "Warm-up length (MonitorConfig.detector_warmup), replayed over the same streams",
              ["warm-up (outcomes)", "stationary pages /100k", "stationary critical /100k",
               "false pages /100k, change streams", "changes detected", "median delay"],
              [[r["warmup"], r["stationary_pages_per_100k"], r["stationary_critical_per_100k"],
                r["change_streams_false_pages_per_100k"], r["detected"], r["median_delay"]] for r in result["warmup"]],
              notes=[f"default {DEFAULT_WARMUP:,}; a warm-up hides the detections of a version's first outcomes; "
                     "the detectors are the same, so the detector events are recorded once per stream and "
                     "replayed through DriftMonitor's incident logic for each length."]),
    ]
    if "quality" in result:
        sizes = result["sizes"]
        qcols = ["detector", "stream", "median_delay", "missed", "seeds", "false_alarms_per_100k"]
        tables.append(Table(
            "detection", "Single shifts of a feature, the scores or the error rate: median delay (events), misses, "
            "false alarms per 100k events", ["detector", "stream", "median delay", "missed", "seeds",
                                             "false alarms /100k"],
            [[r[c] for c in qcols] for r in result["quality"]],
            notes=[f"{sizes['seeds']} seeds per stream, {sizes['n']:,} events, change at event "
                   f"{sizes['change_at']:,}; baseline: every_k, a detector firing every k events with about the "
                   "false-alarm rate of the noisiest real detector; policy: an alarm opens an incident."],
            limit="limit: PSI/KS/mean shift need a window of evidence (window and min_samples) before they can fire."))
        tables.append(Table("detection", "Detector speed (updates per second, one core)", ["what", "per s", "us each"],
                            [[r["what"], r["per_s"], r["us_each"]] for r in result["speed"]],
                            limit="limit: Python call overhead per update; every detector is far faster than the "
                                  "pipeline feeding it."))
    return tables


def main(argv: list[str] | None = None) -> int:
    """CLI entry: prints the tables, or JSON with ``--json``."""
    ap = argparse.ArgumentParser(prog="python -m bench.detection_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", "--small", action="store_true", help="smoke-test sizes (6,000 events, one seed)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per tree family (Bernoulli: twice as many)")
    ap.add_argument("--cache", default=str(CACHE), help="where generated error streams are kept ('' = nowhere)")
    ap.add_argument("--no-shift", action="store_true", help="skip the single-shift and speed tables")
    args = ap.parse_args(argv)
    result = run(tiny=args.tiny, seeds=args.seeds, cache=Path(args.cache) if args.cache else None,
                 shift=not args.no_shift)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for t in as_tables(result):
            print(t.render() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
