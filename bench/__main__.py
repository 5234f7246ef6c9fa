"""``python -m bench [--json] [--only NAME] [--tiny] [--results PATH]``: run every benchmark, print the tables
and write them to ``bench/RESULTS.md``.

Benches (in this order; the issue's numbering in brackets):

- ``pipeline`` [1-3]: fused pipeline throughput vs a raw passthrough, latency at 20/50/80 % of the maximum,
  scaling over 1/2/4 partitions and worker processes (``bench.pipeline_bench``);
- ``entities`` [#16 5]: the same worker at 500 / 10,000 / 100,000 entities with full 30-minute windows in Redis
  (``bench.entities_bench``);
- ``peers`` [#16 6]: the same view in Quix Streams and Bytewax jobs (idiomatic and tuned), same events and run,
  features checked against driftline's (``bench.peers_bench``; the jobs run in ``.venv-bench``: ``make peers-venv``);
- ``breakdown`` [profile]: where a fused event's time goes, stage by stage, and what bounds each stage
  (``bench.breakdown_bench``);
- ``faust`` [1b]: the same work on Faust (``bench.faust_bench``);
- ``control``, ``control_loop`` [4]: signed command → acks; drift onset → alert → rollback → acks;
- ``detection`` [5]: the policy next to bare river ADWIN()/DDM() on multi-change error streams (changes detected,
  delay, false alarms), the warm-up sweep, single shifts against a trivial baseline, updates/s (CPU only);
- ``memory`` [6]: Redis bytes and worker RSS per entity at 10k/100k/1M entities;
- ``features``, ``scorer`` (CPU only), ``store`` (batch reads, Redis memory, aggregator alone);
- ``cluster`` [#15]: one Redis next to a local 3-master Redis Cluster: batch reads, aggregator, pipeline and worker
  scaling (``bench.cluster_bench``);
- ``alert_delivery`` [#12]: alert delivery, direct POST vs the delivery stage, outage recovery (``bench.alert_delivery_bench``).

The benches that need Kafka and Redis share one embedded stack with its own redis-server, started once and
stopped at the end. ``--only`` takes a comma-separated list and rewrites only those benches' sections of the results file. ``--tiny`` runs every bench at smoke-test sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from bench import (
    alert_delivery_bench,
    breakdown_bench,
    cluster_bench,
    control_bench,
    control_loop_bench,
    detection_bench,
    entities_bench,
    faust_bench,
    features_bench,
    memory_bench,
    peers_bench,
    pipeline_bench,
    scorer_bench,
    store_bench,
)
from bench.common import Table, bench_stack
from streams.local.stack import StackInfo

BENCHES = ("pipeline", "entities", "peers", "breakdown", "faust", "control", "control_loop", "detection", "memory",
           "features", "scorer", "store", "cluster", "alert_delivery")
NEEDS_STACK = frozenset({"pipeline", "entities", "peers", "breakdown", "faust", "control", "control_loop", "store",
                         "cluster", "alert_delivery"})
RESULTS = Path(__file__).with_name("RESULTS.md")
_FEATURE_ROW = re.compile(r"^(\S+)\s+(.+?)\s+([\d,]+)\s+([\d.]+)$")


def parse_features_output(text: str) -> Table:
    """``features_bench.main``'s printed table as a :class:`Table` (rows it cannot parse are kept as notes).

    >>> out = "2 events, 1 entities\\nview stage events/s us/event\\nvitals   online (store)   2,442   409.5\\n"
    >>> t = parse_features_output(out)
    >>> t.rows, t.notes
    ([['vitals', 'online (store)', 2442, 409.5]], ['2 events, 1 entities'])
    """
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    rows: list[list] = []
    notes: list[str] = []
    for ln in lines:
        m = _FEATURE_ROW.match(ln)
        if m and not ln.startswith("view "):
            rows.append([m.group(1), m.group(2), int(m.group(3).replace(",", "")), float(m.group(4))])
        elif not ln.startswith("view "):
            notes.append(ln)
    return Table("features", "Feature engine throughput (bench.features_bench, CPU time)",
                 ["view", "stage", "events/s", "us/event"], rows, notes=notes,
                 limit="limit: Python CPU per event in the engine (bucket fold per window); the 'online (store)' "
                       "stage adds decoding/encoding every touched entity's JSON state per batch.")


def run_features(tiny: bool) -> list[Table]:
    """Run ``features_bench.main`` (sized to keep the whole run short) and parse what it prints."""
    argv = ["--events", "300", "--entities", "20", "--batch", "100"] if tiny else \
        ["--events", "10000", "--entities", "500"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        features_bench.main(argv)
    return [parse_features_output(buf.getvalue())]


def _runners(tiny: bool) -> dict[str, Callable[[StackInfo | None], list[Table]]]:
    return {
        "features": lambda _: run_features(tiny),
        "scorer": lambda _: scorer_bench.run(scorer_bench.ScorerConfig.tiny() if tiny
                                             else scorer_bench.ScorerConfig()),
        "control": lambda info: control_bench.run(info, control_bench.ControlConfig.tiny() if tiny  # type: ignore[arg-type]
                                                  else control_bench.ControlConfig()),
        "store": lambda info: store_bench.run(info, store_bench.StoreConfig.tiny() if tiny  # type: ignore[arg-type]
                                              else store_bench.StoreConfig()),
        "cluster": lambda info: cluster_bench.run(info, cluster_bench.ClusterConfig.tiny() if tiny  # type: ignore[arg-type]
                                                  else cluster_bench.ClusterConfig()),
        "pipeline": lambda info: pipeline_bench.run(info, pipeline_bench.PipelineConfig.tiny() if tiny  # type: ignore[arg-type]
                                                    else pipeline_bench.PipelineConfig()),
        "entities": lambda info: entities_bench.run(  # type: ignore[arg-type]
            info, entities_bench.EntitiesConfig.tiny() if tiny else entities_bench.EntitiesConfig()),
        "peers": lambda info: peers_bench.run(  # type: ignore[arg-type]
            info, peers_bench.PeersConfig.tiny() if tiny else peers_bench.PeersConfig()),
        "breakdown": lambda info: breakdown_bench.run(  # type: ignore[arg-type]
            info, breakdown_bench.BreakdownConfig.tiny() if tiny else breakdown_bench.BreakdownConfig()),
        "control_loop": lambda info: control_loop_bench.run(  # type: ignore[arg-type]
            info, control_loop_bench.ControlLoopConfig.tiny() if tiny else control_loop_bench.ControlLoopConfig()),
        "faust": lambda info: (faust_bench.run(info, events=2_000, naive_events=300,  # type: ignore[arg-type]
                                               naive_seconds=10.0)
                               if tiny else faust_bench.run(info)),  # type: ignore[arg-type]
        "memory": lambda _: memory_bench.standalone(memory_bench.MemoryConfig.tiny() if tiny  # flushes its Redis:
                                                    else memory_bench.MemoryConfig()),  # its own stack
        "detection": lambda _: detection_bench.as_tables(detection_bench.run(tiny=tiny)),
        "alert_delivery": lambda info: alert_delivery_bench.run(  # type: ignore[arg-type]
            info, alert_delivery_bench.AlertBenchConfig.tiny() if tiny else alert_delivery_bench.AlertBenchConfig()),
    }


def run_all(names: list[str], *, tiny: bool = False,
            echo: Callable[[str], None] = lambda s: print(s, flush=True)) -> list[Table]:
    """Run the named benches in order; one stack is shared by those that need it."""
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown bench {unknown}; choose from {', '.join(BENCHES)}")
    runners = _runners(tiny)
    tables: list[Table] = []
    with contextlib.ExitStack() as stack:
        info = stack.enter_context(bench_stack()) if NEEDS_STACK & set(names) else None
        for name in names:
            t0 = time.monotonic()
            got = runners[name](info)
            echo(f"[{name}: {time.monotonic() - t0:.1f} s]")
            for t in got:
                echo(t.render() + "\n")
            tables.extend(got)
    return tables


def results_markdown(tables: list[Table], seconds: float, previous: str = "") -> str:
    """The RESULTS.md text. With ``previous`` (the file's text before a partial ``--only`` run), the sections of
    the benches not run now are kept from it, and the header says which sections are new.

    >>> t = Table("scorer", "S", ["a"], [[1]])
    >>> old = "# h\n\nold header\n\n## pipeline\n\nP table\n\n## scorer\n\nold S\n"
    >>> md = results_markdown([t], 3.0, old)
    >>> "P table" in md, "old S" in md, "### S" in md, md.index("## pipeline") < md.index("## scorer")
    (True, False, True, True)
    """
    kept = _sections(previous)
    new = {t.bench for t in tables}
    ran = ", ".join(n for n in BENCHES if n in new)
    how = (f"`python -m bench` in {seconds:.0f} s" if not kept.keys() - new else
           f"`python -m bench` (sections {ran} regenerated by `--only` in {seconds:.0f} s; the others kept from "
           "the file's previous run)")
    head = ["# driftline benchmark results", "",
            f"Generated by {how} on {platform.machine()}, Python "
            f"{platform.python_version()}, {_cpus()} CPU. Every figure sits next to a baseline measured in the "
            "same run; absolute numbers depend on the machine and its load.", ""]
    body: list[str] = []
    for name in BENCHES:
        mine = [t for t in tables if t.bench == name]
        if mine:
            body += [f"## {name}", ""] + [t.render() + "\n" for t in mine]
        elif name in kept:
            body += [kept[name].rstrip("\n") + "\n"]
    return "\n".join(head + body)


def _sections(markdown: str) -> dict[str, str]:
    """``{bench: its '## bench' section, heading included}`` of a RESULTS.md text."""
    out: dict[str, str] = {}
    for part in re.split(r"(?m)^(?=## )", markdown)[1:]:
        name = part.split("\n", 1)[0][3:].strip()
        out[name] = part
    return out


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> list[Table]:
    """Entry point of ``python -m bench``."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the tables as JSON instead of text")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    ap.add_argument("--results", default=str(RESULTS), help="where to write the markdown ('' to skip)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    t0 = time.monotonic()
    echo = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    tables = run_all(names, tiny=args.tiny, echo=echo)
    if args.json:
        sys.stdout.write(orjson.dumps([t.to_dict() for t in tables], option=orjson.OPT_INDENT_2).decode() + "\n")
    if args.results:
        path = Path(args.results)
        partial = set(names) != set(BENCHES)
        previous = path.read_text() if partial and path.exists() else ""
        path.write_text(results_markdown(tables, time.monotonic() - t0, previous))
    return tables


if __name__ == "__main__":
    main()
