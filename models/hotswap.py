"""Applying verified control commands to a scorer, and the ack each instance sends back."""

from __future__ import annotations

import logging

from models.exceptions import ModelError
from models.scorer import Scorer
from streams.control.protocol import Ack, Command

log = logging.getLogger(__name__)

SCORER_COMMANDS = frozenset({"rollback", "promote", "set_traffic", "reload", "pause", "resume"})


def apply_command(scorer: Scorer, cmd: Command, *, instance: str, now_ms: int) -> Ack | None:
    """Apply ``cmd`` to ``scorer``; ``None`` when the command is not for scorers of this model.

    Any failure (unknown version, artifact failing its sha256 check) leaves the current model serving and is
    acked as ``rejected`` with the reason.
    """
    if cmd.model != scorer.model or cmd.command not in SCORER_COMMANDS:
        return None
    try:
        if cmd.command in ("rollback", "promote", "reload"):
            version = cmd.to_version
            if version is None:
                prod = scorer.registry.production(scorer.model)
                if prod is None:
                    raise ModelError("no to_version and no production version in the registry")
                version = prod.version
            scorer.swap_to(version)
        elif cmd.command == "set_traffic":
            t = cmd.traffic or {}
            scorer.set_traffic(t.get("challenger"), float(t.get("canary_pct", 0.0)), bool(t.get("shadow", False)))
        elif cmd.command == "pause":
            scorer.paused = True
        elif cmd.command == "resume":
            scorer.paused = False
    except (ModelError, TypeError, ValueError) as exc:  # e.g. a non-numeric canary_pct: reject, keep serving
        log.warning("control %s %s rejected: %s", cmd.command, cmd.command_id, exc)
        return reject(cmd.command_id, instance, scorer.active_version, str(exc), now_ms, scorer.model)
    log.info("control %s %s applied: serving v%s", cmd.command, cmd.command_id, scorer.active_version)
    return Ack(cmd.command_id, instance, "applied", scorer.active_version, None, now_ms, scorer.model)


def reject(command_id: str, instance: str, active_version: int | None, error: str, now_ms: int,
           model: str = "") -> Ack:
    return Ack(command_id, instance, "rejected", active_version, error, now_ms, model)
