"""The whole control loop: drift onset → first critical alert → signed rollback command → ack of the scorer.

Run ``python -m bench.control_loop_bench [--tiny]``. On one embedded stack (own temp run dir, stopped at the
end) it runs the real end-to-end scenario of ``driftline demo`` (:func:`streams.local.demo.run_demo`: train v1/v2 on a
simulated history, fused pipeline + monitor as threads, stream a drifting scenario in real time) once per
(scenario, seed), and tabulates per scenario the median and max of

- onset → first critical alert: wall seconds from the producer sending the first drifted event to the
  monitor raising the alert, and the same in events (seconds x produce rate);
- alert → rollback command: both are recorded in the same monitor batch, before the command is produced;
- command → all acks: until the monitor has read the scorer's ``applied`` ack (the demo runs one scorer);
- alert → ack; alerts before the onset (false alarms); and whether the run was ``ok`` (alert, command, ack,
  v1 served afterwards, no early alert).

Baseline in the same run: ``bench.control_bench`` with one scorer (a signed command injected directly, no
detection), whose command → all acked is the floor of the loop's command → ack. Each demo run gets its own run
dir (hence its own registry) and its own predictions/labels/alerts/control topics; it is given the bench
stack's broker and Redis, so it starts and stops nothing.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import control_bench
from bench.common import (
    Table,
    bench_settings,
    delete_group_keys,
    ratio,
    run_id,
    run_on_fresh_stack,
)
from streams.local.demo import DemoConfig, run_demo
from streams.local.stack import StackInfo, broker_reachable, redis_reachable
from streams.runtime.workers import redis_client

log = logging.getLogger(__name__)

COLUMNS = ["scenario", "runs", "ok runs", "onset→alert s median", "onset→alert s max", "onset→alert events median",
           "onset→alert events max", "alert→command ms median", "alert→command ms max", "command→acks ms median",
           "command→acks ms max", "alert→ack ms median", "alert→ack ms max", "alerts before onset max",
           "direct command→ack ms median", "command→acks / direct x"]


@dataclass(frozen=True)
class ControlLoopConfig:
    """Scenarios, one demo run per seed each, the demo's sizes, and the direct-command baseline's repeats.

    Training skips the history's warm-up (the view's retention less its lateness: 30 min of event time), so
    ``train_duration_s * time_scale`` must stay well above 1,800 s (50 x 40 = 2,000: ~2,000 training rows).

    >>> ControlLoopConfig.tiny().runs, ControlLoopConfig().runs
    (1, 6)
    """

    scenarios: tuple[str, ...] = ("covariate-shift", "concept-drift")
    seeds: tuple[int, ...] = (7, 11, 13)
    entities: int = 300  # fewer patients: PSI's per-patient autocorrelation gives false alarms (see the e2e test)
    rate: float = 400.0
    duration_s: float = 14.0
    drift_at_s: float = 5.0
    train_duration_s: float = 50.0
    time_scale: float = 40.0
    label_delay_s: float = 2.0
    settle_timeout_s: float = 8.0
    batch_max_ms: int = 50
    baseline_repeats: int = 5

    @classmethod
    def tiny(cls) -> ControlLoopConfig:
        """For the smoke test: one covariate-shift run, one baseline command."""
        return cls(scenarios=("covariate-shift",), seeds=(7,), duration_s=10.0, drift_at_s=4.0,
                   settle_timeout_s=6.0, baseline_repeats=1)

    @property
    def runs(self) -> int:
        """Demo runs in all."""
        return len(self.scenarios) * len(self.seeds)

    def demo(self, scenario: str, seed: int) -> DemoConfig:
        """The :class:`DemoConfig` of one run."""
        return DemoConfig(entities=self.entities, rate=self.rate, duration_s=self.duration_s,
                          drift_at_s=self.drift_at_s, scenario=scenario, time_scale=self.time_scale, seed=seed,
                          train_duration_s=self.train_duration_s, label_delay_s=self.label_delay_s,
                          settle_timeout_s=self.settle_timeout_s)


@dataclass
class LoopRun:
    """The summary of one demo run (the keys of :func:`streams.local.demo.summarize`) and its wall time."""

    scenario: str
    seed: int
    summary: dict[str, Any]
    wall_s: float


def run_once(info: StackInfo, cfg: ControlLoopConfig, scenario: str, seed: int) -> LoopRun:
    """One demo run on the bench stack, in its own run dir with its own topics; its Redis state is deleted."""
    rid = run_id()
    run_dir = Path(info.run_dir) / f"loop-{rid}"
    settings = bench_settings(info, rid, batch_max_ms=cfg.batch_max_ms).replace(run_dir=str(run_dir))
    t0 = time.perf_counter()
    summary = run_demo(settings, cfg.demo(scenario, seed), echo=lambda line: log.debug("%s", line),
                       external_bootstrap=info.bootstrap_servers)
    wall = time.perf_counter() - t0
    gc.collect()  # free the demo's librdkafka clients now, not when the broker is already gone
    # run_demo had its own run dir, so it found no running stack there and stops what it started: nothing
    if not (broker_reachable(info.bootstrap_servers) and redis_reachable(info.redis_url)):
        raise RuntimeError("the bench stack went down during a demo run")
    client = redis_client(settings)
    try:
        delete_group_keys(client, f"driftline-features-{summary['run_id']}")
    finally:
        client.close()
    if summary.get("worker_errors"):
        raise RuntimeError(f"{scenario} seed {seed}: workers failed: {summary['worker_errors']}")
    return LoopRun(scenario, seed, summary, wall)


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


def _med_max(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Median and max of the values that are there (a run without an alert has no delay).

    >>> _med_max([1.0, None, 3.0]), _med_max([None])
    ((2.0, 3.0), (None, None))
    """
    xs = [v for v in values if v is not None]
    return (statistics.median(xs), max(xs)) if xs else (None, None)


def scenario_row(scenario: str, runs: Sequence[LoopRun], direct_ms: float) -> list[Any]:
    """One table row over the runs of ``scenario``."""
    s = [r.summary for r in runs]
    delay_s = _med_max([x["detection_delay_s"] for x in s])
    delay_ev = _med_max([x["detection_delay_events"] for x in s])
    to_cmd = _med_max([_ms(x["alert_to_command_s"]) for x in s])
    to_ack = _med_max([_ms(x["command_to_ack_s"]) for x in s])
    alert_ack = _med_max([_ms(x["alert_to_ack_s"]) for x in s])
    early = max(x["alerts_before_onset"] for x in s)
    return [scenario, len(s), sum(bool(x["ok"]) for x in s), *delay_s, *delay_ev, *to_cmd, *to_ack, *alert_ack,
            early, direct_ms, ratio(to_ack[0], direct_ms) if to_ack[0] is not None else None]


def run(info: StackInfo, cfg: ControlLoopConfig = ControlLoopConfig()) -> list[Table]:
    """The direct-command baseline, then ``cfg.runs`` demo runs; one table."""
    (direct,) = control_bench.run(info, control_bench.ControlConfig(
        workers=(1,), repeats=cfg.baseline_repeats, batch_max_ms=cfg.batch_max_ms))
    _, commands, direct_med, direct_max, *_ = direct.rows[0]
    runs: list[LoopRun] = []
    for scenario in cfg.scenarios:
        for seed in cfg.seeds:
            r = run_once(info, cfg, scenario, seed)
            log.info("%s seed %d: ok=%s delay=%s s, %.1f s wall", scenario, seed, r.summary["ok"],
                     r.summary["detection_delay_s"], r.wall_s)
            runs.append(r)
    rows = [scenario_row(sc, [r for r in runs if r.scenario == sc], direct_med) for sc in cfg.scenarios]
    walls = [r.wall_s for r in runs]
    missed = [f"{r.scenario}/{r.seed}" for r in runs if r.summary["detection_delay_s"] is None]
    seeds = ", ".join(map(str, cfg.seeds))
    notes = [f"Each scenario: {len(cfg.seeds)} runs of `driftline demo`'s loop (seeds {seeds}), {cfg.entities} "
             f"patients at {cfg.rate:g} events/s, {cfg.duration_s:g} s streamed with the drift at "
             f"{cfg.drift_at_s:g} s, {cfg.train_duration_s:g} s of history (time_scale {cfg.time_scale:g}), "
             f"labels {cfg.label_delay_s:g} s late, batch_max_ms = {cfg.batch_max_ms}; one scorer and one "
             f"monitor (threads of this process) on the embedded tansu broker; demo runs took "
             f"{min(walls):.0f}-{max(walls):.0f} s each.",
             "Medians and maxima are over the runs that got that far"
             + (f"; no critical alert after the onset in {', '.join(missed)}" if missed else "") + ". "
             f"Baseline measured in the same run: `bench.control_bench` with one scorer, {commands} signed "
             f"commands injected directly on `control` (no detection, no monitor): command → ack median "
             f"{direct_med:.1f} ms, max {direct_max:.1f} ms; 'command→acks / direct x' divides by that median. "
             "Detection-delay baseline (a detector-free fixed-interval policy, `every_N`) and the detectors' "
             "delays in events on the same simulated streams: `bench.detection_bench` (not rerun here)."]
    return [Table("control_loop", "Control loop end to end: drift onset → alert → rollback → ack", COLUMNS, rows,
                  notes=notes,
                  limit="limit: onset → alert is detection (the monitor evaluates every 100 predictions, needs 500 "
                        "in its PSI window and 3 critical evaluations in a row; concept drift (ADWIN on the errors "
                        "opens the incident, DDM confirms it critical) also waits for the delayed labels); "
                        "alert → command is in-process (same monitor batch: the registry's rollback write and the "
                        "signature); command → acks is the monitor's "
                        "produce at the end of its batch, the scorer's poll of `control` between its batches, "
                        "then the monitor's own poll of the ack, each up to batch_max_ms apart under load; the "
                        "direct baseline (an idle scorer, read at once) is the floor.")]


def main(argv: list[str] | None = None) -> list[Table]:
    """Start a stack, run, print, stop."""
    ap = argparse.ArgumentParser(prog="python -m bench.control_loop_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    cfg = ControlLoopConfig.tiny() if args.tiny else ControlLoopConfig()
    return run_on_fresh_stack(run, cfg)


if __name__ == "__main__":
    main()
