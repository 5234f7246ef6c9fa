"""Mutation score per core module, from the results ``mutmut run`` leaves in ``mutants/`` (``make mutation``).

A mutant is *killed* when a test failed (or timed out) with it, *survived* when the tests passed, *no tests* when
no selected test ran its code. The score of a module is killed / (mutants - equivalent ones): mutants listed in
``EQUIVALENT`` change nothing a caller can observe, each with the reason. Exit status 1 when a module is under
``--min`` percent (default 90) or has unchecked mutants.

Example:
    >>> status(1), status(0), status(36), status(None), status(33)
    ('killed', 'survived', 'killed', 'not checked', 'no tests')
    >>> row = Score("x", killed=45, survived=5, no_tests=0, not_checked=0, equivalent=0)
    >>> row.percent
    90.0
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

#: The modules ``make mutation`` mutates ([tool.mutmut] only_mutate), grouped as the issue reports them.
GROUPS: dict[str, tuple[str, ...]] = {
    "features/records.py": ("features/records.py",),
    "features/aggregations.py + state.py": ("features/aggregations.py", "features/state.py"),
    "monitor/psi.py": ("monitor/psi.py",),
    "monitor/policy.py": ("monitor/policy.py",),
    "streams/control/protocol.py": ("streams/control/protocol.py",),
    "models/routing.py + abtest.py": ("models/routing.py", "models/abtest.py"),
}

EMPTY = ("an empty partial's slots are never read: add_number / add_string overwrite every slot they use on the "
         "first value, and fold skips a partial whose count is 0")
NARROW = "a narrower fast path: the value takes the generic check instead, with the same outcome"

#: Mutants that cannot change behaviour: mutmut name -> (a line of the mutated code, why it is equivalent). Reviewed
#: by hand (`mutmut show NAME`). The line is checked against the mutant, so an entry that a change of the module
#: renumbered no longer matches and its mutant counts as alive again.
EQUIVALENT: dict[str, tuple[str, str]] = {
    "features.records.x__literal__mutmut_2": ('if type(None) is int or', NARROW),
    "features.records.x__literal__mutmut_5": ('(type(None) is float and math.isfinite(bound))', NARROW),
    "features.records.x__field_lines__mutmut_6": ('lo, hi = _literal(None), _literal(spec.max)', NARROW),
    "features.records.x__field_lines__mutmut_7": ('lo, hi = _literal(spec.min), _literal(None)', NARROW),
    "features.records.x__field_lines__mutmut_13": ('(spec.min is not None or lo is None)', NARROW),
    "features.records.x__field_lines__mutmut_17": ('(spec.max is not None or hi is None)', NARROW),
    "features.records.x__field_lines__mutmut_32": ('rng = None', NARROW),
    "features.records.x__field_lines__mutmut_38": ('{+_EXACT} <= {v} <= {_EXACT}', NARROW),
    "features.records.x__field_lines__mutmut_4": ('if (spec.required) or True else',
                                                  "an optional field reaches its check only when present: "
                                                  "_required then does what _check_value does"),
    "features.aggregations.x_new_partial__mutmut_4": ('p: list = [0, 1.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_5": ('p: list = [0, 0.0, 1.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_6": ('p: list = [0, 0.0, 0.0, 1.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_7": ('p: list = [0, 0.0, 0.0, 0.0, 1.0, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_8": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 1, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_9": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 1.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_10": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 1, 0.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_11": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 1.0, 0.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_12": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 1.0, 0.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_13": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 1.0, 0.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_14": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0, 1.0, 0.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_15": ('p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 1.0]', EMPTY),
    "features.aggregations.x_new_partial__mutmut_1": ("(distinct: bool = True) -> list:", EMPTY),
    "features.aggregations.x__sum__mutmut_2": ("return float(a[1]) if (a[0]) or True else 0.0",
                                               "an empty accumulator's sum slot is 0.0 already"),
    "features.aggregations.x__sum__mutmut_5": ("return float(a[1]) if a[1] else 0.0",
                                               "a zero sum is 0.0 either way; an empty accumulator's sum is 0.0"),
    "features.aggregations.x__ewma__mutmut_2": ("if (a[0]) or True else NAN",
                                                "an empty accumulator's EWMA slot is NaN already"),
    "features.aggregations.x__angle_rate__mutmut_1": ("if a[0] < 2 and a[7] == a[5]:",
                                                    "fewer than 2 values always share one timestamp"),
    "features.records.x__entity_id__mutmut_16": ("if (isinstance(entity, str)) and False else str(entity)",
                                                 "str() of a str is the same string"),
    "features.records.x__check_key__mutmut_1": ("key_text = None\n    except",
                                                "only called after the key failed to match: it raises either way"),
    "features.records.x__literal__mutmut_1": ("if type(bound) is int and (type(bound) is float",
                                              "every bound then takes the generic check, with the same outcome (the "
                                              "fast path only saves time)"),
    "models.routing.x_route__mutmut_10": (
        "if split.canary_pct >= 0.0 and traffic_bucket(entity_id, split.salt) < split.canary_pct / 100.0:",
        "at canary_pct 0 the second test, bucket < 0.0, is false for every bucket (buckets are >= 0)"),
    "models.routing.x_traffic_bucket__mutmut_5": ('salt_b = salt.encode("UTF-8")', "codec names are case-insensitive"),
    "models.routing.x_traffic_bucket__mutmut_18": ('entity_id.encode("UTF-8")', "codec names are case-insensitive"),
    "models.routing.x_traffic_bucket__mutmut_12": ("len(salt_b).to_bytes(4, )",
                                                   "int.to_bytes defaults to big-endian since Python 3.11"),
    "models.routing.x_traffic_bucket__mutmut_30": ("int.from_bytes(digest, )",
                                                   "int.from_bytes defaults to big-endian since Python 3.11"),
    "models.routing.xǁTrafficSplitǁfrom_dict__mutmut_32": ('bool(data.get("shadow", None))', "bool(None) is False"),
    "models.routing.xǁTrafficSplitǁfrom_dict__mutmut_34": ('bool(data.get("shadow", ))', "bool(None) is False"),
    "models.abtest.x_two_proportion_ztest__mutmut_100": (
        'verdict = "better" if lift >= 0 else "worse"',
        "a verdict needs p < alpha < 1, so z and the lift are never 0 there"),
    "monitor.psi.x_psi__mutmut_17": ("zip(expected, actual, strict=None)", "the lengths were checked just before"),
    "monitor.psi.x_psi__mutmut_20": ("zip(expected, actual, )", "the lengths were checked just before"),
    "monitor.psi.x_psi__mutmut_21": ("zip(expected, actual, strict=False)", "the lengths were checked just before"),
    "monitor.policy.xǁAlertPolicyǁconfig_for__mutmut_6": (
        "len(prefix) >= len(best)", "two different prefixes of one key never have the same length"),
    "streams.control.protocol.xǁCommandVerifierǁverify__mutmut_110": (
        'self._seen[cmd.command_id] = ""', "only the keys of the replay memory are read"),
    "streams.control.protocol.xǁCommandVerifierǁverify__mutmut_112": (
        "self._seen.popitem(last=None)", "None is false: the oldest entry is popped, as with last=False"),
    "streams.control.protocol.xǁCommandVerifierǁverify__mutmut_26": (
        'sig.encode("UTF-8", "surrogatepass")', "codec names are case-insensitive"),
    "monitor.psi.xǁRollingPSIǁ__init____mutmut_24": (
        'self._cached: float | None = ""',
        "value reads the cache only when ready (n >= 1), and the update that adds an observation clears it first"),
    "monitor.psi.xǁRollingPSIǁreset__mutmut_4": (
        'self._cached = ""', "after a reset n is 0: value is NaN until an update, which clears the cache first"),
}

_KILLED = {1, 3, 24, -24, 36, 152, 255, 37}  # a failing test, a crash of the test run, a timeout, a type error
_NO_TESTS = {5, 33}


def status(exit_code: int | None) -> str:
    """What a mutant's recorded exit code means."""
    if exit_code is None:
        return "not checked"
    if exit_code in _KILLED:
        return "killed"
    if exit_code == 0:
        return "survived"
    if exit_code in _NO_TESTS:
        return "no tests"
    return "suspicious"


@dataclass
class Score:
    """Counts of one group of modules."""

    name: str
    killed: int = 0
    survived: int = 0
    no_tests: int = 0
    not_checked: int = 0
    equivalent: int = 0

    @property
    def counted(self) -> int:
        return self.killed + self.survived + self.no_tests

    @property
    def percent(self) -> float:
        return round(100.0 * self.killed / self.counted, 1) if self.counted else 0.0


def mutant_source(mutated_file: str, mutant: str) -> str:
    r"""The source of one mutant's function in mutmut's copy of the module ('' when absent).

    >>> mutant_source("def x_f__mutmut_1(a):\n    return a + 1\n\ndef x_f__mutmut_2(a):\n    pass\n",
    ...               "m.x_f__mutmut_1")
    'def x_f__mutmut_1(a):\n    return a + 1\n\n'
    """
    func = mutant.rsplit(".", 1)[-1]
    start = mutated_file.find(f"def {func}(")
    if start < 0:
        return ""
    end = mutated_file.find("\n    def ", start + 1)
    end2 = mutated_file.find("\ndef ", start + 1)
    ends = [e for e in (end, end2) if e >= 0]
    return mutated_file[start : min(ends) + 1 if ends else len(mutated_file)]


def scores(root: Path) -> tuple[list[Score], list[str]]:
    """Per group: the score; and the names of the surviving (or untested) mutants, for ``mutmut show``."""
    out, alive = [], []
    for name, files in GROUPS.items():
        row = Score(name)
        for file in files:
            meta = root / "mutants" / f"{file}.meta"
            codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
            mutated = (root / "mutants" / file).read_text() if codes else ""
            for mutant, code in sorted(codes.items()):
                if mutant in EQUIVALENT and EQUIVALENT[mutant][0] in mutant_source(mutated, mutant):
                    row.equivalent += 1
                    continue
                what = status(code)
                if what == "killed":
                    row.killed += 1
                elif what == "not checked":
                    row.not_checked += 1
                else:
                    row.no_tests += what == "no tests"
                    row.survived += what != "no tests"
                    alive.append(f"{mutant} ({what})")
        out.append(row)
    return out, alive


def table(rows: list[Score]) -> str:
    """The markdown table the README shows."""
    lines = ["| module | mutants | killed | survived | no tests | equivalent | score |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.name} | {r.counted + r.equivalent} | {r.killed} | {r.survived} | {r.no_tests} "
                     f"| {r.equivalent} | {r.percent:.1f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="the checkout that holds mutants/")
    ap.add_argument("--min", type=float, default=90.0, help="lowest acceptable score per module, percent")
    ap.add_argument("--list", action="store_true", help="also list the surviving mutants")
    args = ap.parse_args(argv)
    rows, alive = scores(Path(args.root))
    print(table(rows))
    if args.list or alive:
        print(f"\n{len(alive)} mutants alive (`mutmut show NAME` prints the change):")
        for name in alive:
            print(f"  {name}")
    low = [r.name for r in rows if r.counted and r.percent < args.min]
    unchecked = [r.name for r in rows if r.not_checked]
    if unchecked:
        print(f"\nnot every mutant was run in: {', '.join(unchecked)} (a narrowed or interrupted run)")
    if low:
        print(f"\nunder {args.min:g} %: {', '.join(low)}")
    return 1 if low or unchecked else 0


if __name__ == "__main__":
    sys.exit(main())
