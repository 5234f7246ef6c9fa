"""Every driftline command's help has examples; every option's help shows its default, and numeric options a unit.
The checker is tested on a bad parser too, so this test can fail."""

from __future__ import annotations

import argparse
import re

from streams.local.cli_parser import DefaultsFormatter, DriftlineParser, build_parser

UNIT = re.compile(r"\b(s|ms|seconds?|minutes?|per second|events?|labels?|entities|patients|vehicles|rows|records|"
                  r"percent|share|times|port|version|seed|epoch ms)\b")


def walk(parser: argparse.ArgumentParser, path: str = "driftline") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += walk(sub, f"{path} {name}")
    return out


def problems(parser: argparse.ArgumentParser) -> list[str]:
    found = []
    for path, p in walk(parser):
        text = p.format_help()
        if "examples:" not in text or not re.search(r"^\s+driftline ", text.split("examples:")[-1], re.M):
            found.append(f"{path}: no example")
        formatter = DefaultsFormatter(prog=path)
        for action in p._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[-1]
            raw = action.help or ""
            shown = formatter._get_help_string(action)
            if not raw:
                found.append(f"{path} {flag}: no help")
            if "default" not in shown:
                found.append(f"{path} {flag}: no default shown")
            if action.type in (int, float) and not UNIT.search(raw):
                found.append(f"{path} {flag}: no unit in {raw!r}")
    return found


def test_every_command_has_examples_and_every_option_a_default_and_unit() -> None:
    parser = build_parser()
    assert problems(parser) == []
    commands = {path for path, _ in walk(parser)}
    assert {"driftline status", "driftline report", "driftline views validate", "driftline demo"} <= commands


def test_the_checker_finds_what_is_missing() -> None:
    bad = DriftlineParser(prog="driftline", epilog="examples:\n  driftline x")
    sub = bad.add_subparsers(dest="cmd")
    cmd = sub.add_parser("thing")  # no example
    cmd.add_argument("--wait", type=float, default=2.0, help="how long to wait")  # no unit
    cmd.add_argument("--quiet", action="store_true")  # no help
    cmd.add_argument("--name", default=None, help="name (default: derived)")
    found = problems(bad)
    assert "driftline thing: no example" in found
    assert any("--wait: no unit" in f for f in found)
    assert "driftline thing --quiet: no help" in found
    assert not any("--name" in f for f in found)


def test_help_renders_defaults_with_units() -> None:
    text = " ".join(walk(build_parser())[0][1]._subparsers._group_actions[0].choices["produce"].format_help().split())
    assert "events per second (default: 200.0)" in text
    assert "how long to stream, in seconds (default: 30.0)" in text
    assert "--labels also produce delayed labels (vitals) (default: off)" in text
