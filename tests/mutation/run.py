"""Run mutmut once per group of core modules, each against its own fast unit tests (``make mutation``).

One mutmut run over every module would collect test coverage over every test first and let a slow property test
of one module run for the mutants of another. So each group runs in a scratch directory of its own
(``.mutation/<group>/``: links to the packages and tests, and a ``pyproject.toml`` whose ``[tool.mutmut]`` is the
project's with ``only_mutate`` and the test selection of that group), one after the other. The scores are then
read from every scratch directory (``tests/mutation/score.py``).

    python -m tests.mutation.run                 # every group, then the scores
    python -m tests.mutation.run psi policy      # some groups (names: the keys of GROUP_TESTS, see --help)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.mutation.score import GROUPS, scores, table

ROOT = Path(__file__).resolve().parents[2]
SCRATCH = ROOT / ".mutation"
LINKED = ("features", "monitor", "streams", "models", "tests")

#: short name -> (the GROUPS key, the unit tests that run against its mutants)
GROUP_TESTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "records": ("features/records.py", (
        "tests/features/test_records.py", "tests/features/test_records_fast_path.py",
        "tests/features/test_records_spec.py")),
    "aggregations": ("features/aggregations.py + state.py", (
        "tests/features/test_aggregations.py", "tests/features/test_state.py", "tests/features/test_plan.py",
        "tests/features/test_engine.py", "tests/features/test_window_reference.py",
        "tests/features/test_aggregations_edges.py")),
    "psi": ("monitor/psi.py", ("tests/monitor/test_monitor_psi.py", "tests/monitor/test_monitor_psi_edges.py")),
    "policy": ("monitor/policy.py", (
        "tests/monitor/test_monitor_policy.py", "tests/monitor/test_monitor_policy_edges.py")),
    "protocol": ("streams/control/protocol.py", (
        "tests/streams/test_control.py", "tests/streams/test_control_tamper.py",
        "tests/streams/test_control_fields.py")),
    "routing": ("models/routing.py + abtest.py", (
        "tests/models/test_model_routing.py", "tests/models/test_model_abtest.py",
        "tests/models/test_model_routing_abtest_edges.py")),
}
assert {g for g, _ in GROUP_TESTS.values()} == set(GROUPS)


def _toml(value: object) -> str:
    return json.dumps(value)  # lists of strings, strings, numbers and booleans: JSON is valid TOML for these


def prepare(name: str) -> Path:
    """The scratch directory of group ``name``, with its generated ``pyproject.toml``."""
    group, tests = GROUP_TESTS[name]
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())
    conf = dict(base["tool"]["mutmut"])
    conf["only_mutate"] = list(GROUPS[group])
    conf["pytest_add_cli_args_test_selection"] = list(tests)
    pytest_conf = base["tool"]["pytest"]["ini_options"]
    where = SCRATCH / name
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    for part in LINKED:
        (where / part).symlink_to(ROOT / part, target_is_directory=True)
    lines = ["[tool.mutmut]", *(f"{k} = {_toml(v)}" for k, v in conf.items()), "",
             "[tool.pytest.ini_options]", f"pythonpath = {_toml(pytest_conf['pythonpath'])}",
             f"markers = {_toml(pytest_conf['markers'])}", ""]
    (where / "pyproject.toml").write_text("\n".join(lines))
    return where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="*", choices=[[], *GROUP_TESTS], help="default: every group")
    ap.add_argument("--min", type=float, default=90.0, help="lowest acceptable score per module, percent")
    args = ap.parse_args(argv)
    names = args.groups or list(GROUP_TESTS)
    mutmut = Path(sys.executable).with_name("mutmut")
    for name in names:
        where = prepare(name)
        print(f"== {name}: mutmut in {where.relative_to(ROOT)}", flush=True)
        env = {**os.environ, "DRIFTLINE_MUTATION": "1"}  # tests/budget.py: a fifth of the hypothesis examples
        subprocess.run([str(mutmut), "run"], cwd=where, env=env, check=True, stdout=subprocess.DEVNULL)
    rows = []
    low = []
    for name in names:
        group = GROUP_TESTS[name][0]
        row = next(r for r in scores(SCRATCH / name)[0] if r.name == group)
        rows.append(row)
        if row.percent < args.min or row.not_checked:
            low.append(name)
    print(table(rows))
    for name in names:
        alive = scores(SCRATCH / name)[1]  # only this group's modules were mutated there
        if alive:
            print(f"\n{name}: {len(alive)} alive (`cd .mutation/{name} && mutmut show NAME`):")
            print("\n".join(f"  {a}" for a in alive))
    if low:
        print(f"\nunder {args.min:g} % or incomplete: {', '.join(low)}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
