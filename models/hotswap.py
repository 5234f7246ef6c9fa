"""A scorer serving its model's desired state: what a command needs loaded, and converging between batches.

The control agent (:mod:`streams.runtime.control_agent`) decides commands against the shared desired state;
this module is the model side of it. :func:`resolve_version` turns a command into the champion it asks for,
:func:`preload` loads and verifies what a new desired state needs *before* it is recorded (an artifact that
fails its sha256 check is refused, never half-applied), and :func:`converge` makes a scorer serve a desired
state, reusing what is loaded.

Example:
    >>> import tempfile
    >>> from models.registry import Registry
    >>> from models.scorer import Scorer
    >>> from streams.control.desired import DesiredState
    >>> reg = Registry(tempfile.mkdtemp())
    >>> for w in (1, 2):
    ...     _ = reg.register("m", {"w": w}, feature_names=["x"], flavor="pickle")
    >>> _ = reg.promote("m", 2)
    >>> scorer = Scorer(reg, "m"); _ = scorer.start()
    >>> converge(scorer, DesiredState(revision=1, version=1, paused=True))
    True
    >>> scorer.active_version, scorer.paused
    (1, True)
    >>> converge(scorer, DesiredState(revision=1, version=1, paused=True))
    False
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from models.loaded import LoadedModel
from models.registry import Registry
from models.scorer import Scorer
from streams.control.desired import VERSION_COMMANDS, DesiredState
from streams.control.protocol import Ack, Command

log = logging.getLogger(__name__)

SCORER_COMMANDS = frozenset({"rollback", "promote", "set_traffic", "reload", "pause", "resume"})


def resolve_version(registry: Registry, model: str, cmd: Command, desired: DesiredState) -> int | None:
    """The champion a version command asks for: its ``to_version``; for a rollback without one the registry's
    rollback target (never the desired version); for a reload without one the registry's production version
    (how a version promoted in the registry by hand becomes the desired one). None when there is none."""
    if cmd.command not in VERSION_COMMANDS:
        return None
    if cmd.to_version is not None:
        return cmd.to_version
    if cmd.command == "rollback":
        exclude = {desired.version} if desired.version is not None else set()
        target = registry.rollback_target(model, exclude=exclude)
        return None if target is None else target.version
    if cmd.command == "reload":
        prod = registry.production(model)
        return None if prod is None else prod.version
    return None


def preload(scorer: Scorer, desired: DesiredState) -> dict[int, LoadedModel]:
    """Load and verify every version ``desired`` needs that ``scorer`` does not serve yet (raises
    :class:`~models.exceptions.ModelError` for an unknown version or an artifact failing its check)."""
    serving = scorer.active.by_version
    return {v: scorer.load(v) for v in (desired.version, desired.challenger) if v is not None and v not in serving}


def converge(scorer: Scorer, desired: DesiredState, loaded: Mapping[int, LoadedModel] | None = None) -> bool:
    """Make ``scorer`` serve ``desired`` (champion, traffic split, paused); True when anything changed.

    Call between batches only. Raises :class:`~models.exceptions.ModelError` when a version cannot be loaded;
    the scorer then keeps serving what it served."""
    loaded = loaded or {}
    changed = False
    if desired.version is not None and scorer.active_version != desired.version:
        scorer.swap_to(desired.version, loaded.get(desired.version))
        changed = True
    split = scorer.active.split
    want = (desired.challenger, float(desired.canary_pct) if desired.challenger else 0.0,
            bool(desired.shadow) and desired.challenger is not None)
    if (split.challenger, split.canary_pct, split.shadow) != want:
        chall = None if desired.challenger is None else loaded.get(desired.challenger)
        scorer.set_traffic(desired.challenger, desired.canary_pct, desired.shadow, chall)
        changed = True
    if scorer.paused != desired.paused:
        scorer.paused = desired.paused
        changed = True
    if changed:
        log.info("scorer %s: serving desired revision %d (v%s, challenger %s, paused %s)", scorer.model,
                 desired.revision, scorer.active_version, desired.challenger, desired.paused)
    return changed


def reject(command_id: str, instance: str, active_version: int | None, error: str, now_ms: int,
           model: str = "", reason: str = "invalid", group: str = "") -> Ack:
    """A ``rejected`` ack: ``reason`` is machine-readable (see ``REJECT_REASONS``), ``error`` says why."""
    return Ack(command_id, instance, "rejected", active_version, error, now_ms, model, reason, group)
