"""Finding the embedded stack from any directory, like git finds its repository.

The run directory (``stack.json``, ``control.key``, logs) is, in this order:

1. ``DRIFTLINE_RUN_DIR`` (or ``run_dir`` in the config file), when set;
2. the nearest ``.driftline/run`` holding a ``stack.json``, searching from the working directory upward;
3. the stack ``driftline up`` started last, named in the user state file
   ``$XDG_STATE_HOME/driftline/stack`` (default ``~/.local/state/driftline/stack``), if it still has a
   ``stack.json``;
4. ``./.driftline/run`` (where ``driftline up`` creates one).

A found run directory brings its registry along: ``<project>/.driftline/registry`` unless
``DRIFTLINE_REGISTRY`` (or ``registry_dir``) says otherwise.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / ".driftline/run").mkdir(parents=True)
    >>> _ = (root / ".driftline/run/stack.json").write_text("{}")
    >>> (root / "a/b").mkdir(parents=True)
    >>> found = find_run_dir({}, root / "a/b", state_home=root / "state")
    >>> found.path == root / ".driftline/run", found.how
    (True, 'found upward from the working directory')
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FoundRunDir", "find_run_dir", "forget_stack", "remember_stack", "state_file"]

DEFAULT_RUN_DIR = ".driftline/run"
DEFAULT_REGISTRY = ".driftline/registry"


@dataclass(frozen=True)
class FoundRunDir:
    path: Path
    how: str  # for messages: where the run directory came from
    registry: Path | None = None  # the registry that goes with it (None: keep the configured one)


def state_file(env: Mapping[str, str]) -> Path:
    """The user state file naming the last started stack."""
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "driftline" / "stack"


def find_run_dir(env: Mapping[str, str], cwd: Path, *, configured: str | None = None,
                 state_home: Path | None = None) -> FoundRunDir:
    """Where the stack's run directory is (see the module docstring). ``configured``: the config file's
    ``run_dir`` if it set one."""
    if env.get("DRIFTLINE_RUN_DIR"):
        return FoundRunDir(Path(env["DRIFTLINE_RUN_DIR"]), "DRIFTLINE_RUN_DIR")
    if configured and configured != DEFAULT_RUN_DIR:
        return FoundRunDir(Path(configured), "run_dir in the config file")
    cwd = cwd.resolve()
    for d in (cwd, *cwd.parents):
        run = d / DEFAULT_RUN_DIR
        if (run / "stack.json").is_file():
            return FoundRunDir(run, "found upward from the working directory", d / DEFAULT_REGISTRY)
    pointer = (state_home / "driftline" / "stack") if state_home is not None else state_file(env)
    with contextlib.suppress(OSError):
        run = Path(pointer.read_text().strip())
        if run.is_absolute() and (run / "stack.json").is_file():
            return FoundRunDir(run, f"the stack `driftline up` started last ({pointer})", run.parent / "registry")
    return FoundRunDir(cwd / DEFAULT_RUN_DIR, "no stack found (searched upward and the user state file)")


def remember_stack(env: Mapping[str, str], run_dir: Path) -> None:
    """Name ``run_dir`` in the user state file (``driftline up``); best effort."""
    path = state_file(env)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(Path(run_dir).resolve()))
        os.replace(tmp, path)


def forget_stack(env: Mapping[str, str], run_dir: Path) -> None:
    """Remove the user state file if it names ``run_dir`` (``driftline down``)."""
    path = state_file(env)
    with contextlib.suppress(OSError):
        if path.read_text().strip() == str(Path(run_dir).resolve()):
            path.unlink()
