"""The scorer side of the control plane: commands decided once per model, served and acked once per instance.

A :class:`ControlAgent` belongs to one scorer instance. :meth:`ControlAgent.start` (before the first batch)
makes the scorer serve the model's desired state from the control store (before any command: the registry's
production version) and brings the registry's stages in line with it. :meth:`ControlAgent.handle` takes what
the control reader yields, between batches; for each command the ledger (:mod:`streams.control.ledger`) says
whether this instance decides it (``new``: ordering and validity checked, the artifacts loaded and verified,
then the decision and the new desired state recorded in one atomic step), follows another instance's decision
(serve, ack once), rejects a second copy (``replayed``) or ignores what it already reflects.

The agent returns :class:`Outcome` objects (the ack to publish, the alert to raise); producing them is the
worker's job. When the store does not answer, commands wait in order and are retried on the next call:
never decided on a guess, never dropped.

Example (the in-memory store; two instances of one group):
    >>> import tempfile
    >>> from models.registry import Registry
    >>> from models.scorer import Scorer
    >>> from streams.control.channel import Delivery
    >>> from streams.control.protocol import Command
    >>> from streams.control.store import MemoryControlStore
    >>> reg = Registry(tempfile.mkdtemp())
    >>> for w in (1, 2):
    ...     _ = reg.register("m", {"w": w}, feature_names=["x"], flavor="pickle")
    ...     _ = reg.promote("m", w)
    >>> store = MemoryControlStore("m:test")
    >>> a, b = (ControlAgent(Scorer(reg, "m"), store, reg, instance=i, group="g") for i in "ab")
    >>> _ = a.start(); _ = b.start()
    >>> rollback = Delivery(Command("c1", "rollback", "m", 1, None, "psi", "ana", 1_000), "control[0]@5")
    >>> [(o.ack.instance, o.ack.status, o.ack.active_version) for o in a.handle([rollback], now_ms=1_001)]
    [('a', 'applied', 1)]
    >>> [(o.ack.instance, o.ack.status, o.ack.active_version) for o in b.handle([rollback], now_ms=1_002)]
    [('b', 'applied', 1)]
    >>> b.handle([rollback], now_ms=1_003)   # the same record again: nothing to send
    []
    >>> copy = Delivery(rollback.command, "control[0]@9")   # published again
    >>> [(o.ack.status, o.ack.reason) for o in a.handle([copy], now_ms=1_004)]
    [('rejected', 'replayed')]
    >>> reg.production("m").version
    1
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from models.exceptions import ModelError, RegistryError
from models.hotswap import SCORER_COMMANDS, converge, preload, reject, resolve_version
from models.registry import Registry
from models.scorer import Scorer
from monitor.alerts import Alert
from monitor.scorer_alerts import command_rejected_alert
from streams.control.channel import Delivery, Refused
from streams.control.desired import DesiredState, Verdict, decide, history_entry
from streams.control.ledger import AckMark, LedgerEntry, Sighting, classify
from streams.control.protocol import Ack
from streams.control.store import ControlStore, Look
from streams.exceptions import ControlStoreError

log = logging.getLogger(__name__)

_ATTEMPTS = 8  # looks per command before giving up for this tick (other commands decided in between)


@dataclass(frozen=True)
class Outcome:
    """What one command led to on this instance: the ``ack`` to publish and the ``alert`` to raise (if any)."""

    command: str
    command_id: str
    sighting: str
    ack: Ack | None
    alert: Alert | None = None
    before: int | None = None  # the champion before


class ControlAgent:
    """One scorer instance's view of the control plane (see the module docstring)."""

    def __init__(self, scorer: Scorer, store: ControlStore, registry: Registry, *, instance: str, group: str,
                 clock: Callable[[], float] = time.time, max_pending: int = 10_000) -> None:
        self.scorer = scorer
        self.store = store
        self.registry = registry
        self.uid = registry.uid(scorer.model)  # commands scoped to another registry are not for this scorer
        self.instance = instance
        self.group = group
        self.clock = clock
        self.max_pending = max_pending
        self.joined_seq = 0
        self.pending: deque[Delivery] = deque()
        self.diverged: str | None = None  # why the scorer does not serve the desired state, when it does not
        self.store_error: str | None = None
        self.desired = DesiredState()
        self._queued: list[Outcome] = []  # alerts raised before the worker could publish (at start)

    @property
    def model(self) -> str:
        return self.scorer.model

    @property
    def accepting(self) -> bool:
        """False while the backlog is full: the worker stops reading the control topic until it drains."""
        return len(self.pending) < self.max_pending

    # ------------------------------------------------------------------------------------------ start
    def start(self) -> DesiredState:
        """Serve the desired state (raises :class:`ControlStoreError` when the store cannot be read: a worker
        must not guess what to serve). A desired version that cannot be loaded leaves the registry's production
        version serving and ``diverged`` set, so a new command can still fix it."""
        state, seq = self.store.current()
        self.joined_seq, self.desired = seq, state
        if state.revision == 0:
            self.scorer.start()
            return state
        try:
            self.scorer.start(state.version)
        except ModelError as exc:
            self.diverged = f"desired v{state.version} (revision {state.revision}) cannot be loaded: {exc}"
            fallback = self._fallback_version(state.version)
            if fallback is None:
                raise
            log.error("control %s: %s; serving v%d until a command fixes it", self.model, self.diverged, fallback)
            self.scorer.start(fallback)
            now = int(self.clock() * 1000)
            self._queued.append(Outcome(state.command, state.command_id, "start", None, command_rejected_alert(
                self.model, fallback, f"desired state (revision {state.revision})", state.command_id,
                f"failed: {self.diverged}", self.instance, now), fallback))
            with contextlib.suppress(ModelError):  # traffic and pause still apply to what serves
                converge(self.scorer, replace(state, version=fallback))
            self.desired = state
            return state
        self._serve(state)
        self._follow_registry(state)
        return state

    def _fallback_version(self, broken: int | None) -> int | None:
        """What serves while the desired champion cannot: the registry's production version, or its rollback
        target, but never the broken one."""
        prod = self.registry.production(self.model)
        if prod is not None and prod.version != broken:
            return prod.version
        target = self.registry.rollback_target(self.model, exclude={broken} if broken is not None else set())
        return None if target is None else target.version

    # ------------------------------------------------------------------------------------------ commands
    def handle(self, items: Iterable[Any], now_ms: int | None = None) -> list[Outcome]:
        """Queue what the reader yielded and decide what is queued, in order (acks of others are ignored)."""
        now = int(self.clock() * 1000) if now_ms is None else now_ms
        out, self._queued = self._queued, []
        for item in items:
            if isinstance(item, Refused):
                refused = self._refused(item, now)
                if refused is not None:
                    out.append(refused)
            elif isinstance(item, Delivery) and self._mine(item):
                self.pending.append(item)
        while self.pending:
            try:
                outcome = self._process(self.pending[0], now)
            except (ControlStoreError, OSError) as exc:  # infrastructure: the command waits, in order
                if self.store_error is None:
                    log.error("control %s: store unavailable, %d command(s) wait: %s", self.model,
                              len(self.pending), exc)
                self.store_error = str(exc)
                break
            except Exception as exc:  # noqa: BLE001 - one command must never stop the worker
                log.exception("control %s: %s %s failed", self.model, self.pending[0].command.command,
                              self.pending[0].command_id)
                outcome = self._rejection(self.pending[0], "failed", f"{type(exc).__name__}: {exc}", now,
                                          Sighting.NEW, self.scorer.active_version)
            self.store_error = None
            self.pending.popleft()
            if outcome is not None:
                out.append(outcome)
        return out

    def _mine(self, d: Delivery) -> bool:
        cmd = d.command
        if cmd.model != self.model or cmd.command not in SCORER_COMMANDS:
            return False
        if cmd.scope is not None and cmd.scope != self.uid:
            log.debug("control %s: %s %s is for registry scope %s, not %s: ignored", self.model, cmd.command,
                      cmd.command_id, cmd.scope, self.uid)
            return False
        return True

    def _refused(self, item: Refused, now: int) -> Outcome | None:
        if item.catch_up or not item.command_id or item.model not in ("", self.model):
            return None
        version = self.scorer.active_version
        ack = reject(item.command_id, self.instance, version, item.reason, now, self.model, "unverified", self.group)
        alert = command_rejected_alert(self.model, version, "unverified", item.command_id, item.reason,
                                       self.instance, now)
        return Outcome("unverified", item.command_id, "unverified", ack, alert, version)

    def _process(self, d: Delivery, now: int) -> Outcome | None:
        cid = d.command.command_id
        for _ in range(_ATTEMPTS):
            look = self.store.look(cid, self.instance)
            sighting = classify(look.entry, d.ref, acked=look.acked, joined_seq=self.joined_seq)
            if sighting is Sighting.NEW:
                outcome = self._decide(d, look, now)
                if outcome is not None:
                    return outcome
                continue  # decided by someone else meanwhile, or another decision moved seq: look again
            assert look.entry is not None
            if sighting is Sighting.REPLAYED:
                return None if d.catch_up else self._replayed(d, look.entry, now)
            if sighting is Sighting.FOLLOW:
                return self._follow(d, look, now)
            log.debug("control %s: %s %s from %s (%s): nothing to do", self.model, d.command.command, cid, d.ref,
                      sighting.value)
            return None
        raise ControlStoreError(f"command {cid}: no stable read of the ledger after {_ATTEMPTS} attempts")

    def _decide(self, d: Delivery, look: Look, now: int) -> Outcome | None:
        cmd = d.command
        base = look.state.with_baseline(self._registry_production())
        try:
            to_version = resolve_version(self.registry, self.model, cmd, base)
        except RegistryError as exc:
            to_version, verdict = None, Verdict("rejected", "invalid", str(exc), base)
        else:
            verdict = decide(base, cmd, to_version=to_version, now_ms=now, decided_by=self.instance)
        loaded: dict = {}
        if verdict.applied:
            try:
                loaded = preload(self.scorer, verdict.state)
            except ModelError as exc:
                reason = "invalid" if isinstance(exc, RegistryError) else "failed"
                verdict = Verdict("rejected", reason, f"{cmd.command} v{to_version}: {exc}", base)
        entry = LedgerEntry(cmd.command_id, cmd.command, d.ref, verdict.status, verdict.reason, verdict.detail,
                            seq=look.seq + 1, revision=verdict.state.revision, decided_by=self.instance,
                            group=self.group, at=now)
        result = self.store.record(entry, expected_seq=look.seq, ack=AckMark(verdict.status, verdict.reason,
                                                                              self.group, now),
                                   new_state=verdict.state if verdict.applied else None,
                                   history=history_entry(base, verdict.state, cmd) if verdict.applied else None)
        if result.outcome != "recorded":
            return None
        before = self.scorer.active_version
        if verdict.applied:
            log.info("control %s: %s %s decided (revision %d, v%s) by %s", self.model, cmd.command, cmd.command_id,
                     verdict.state.revision, verdict.state.version, self.instance)
            error = self._serve(verdict.state, loaded)
            if base.version != verdict.state.version:
                self._follow_registry(verdict.state)
            if error is not None:
                return self._rejection(d, "failed", error, now, Sighting.NEW, before)
            return self._applied(d, now, Sighting.NEW, before)
        return self._rejection(d, verdict.reason, verdict.detail, now, Sighting.NEW, before)

    def _follow(self, d: Delivery, look: Look, now: int) -> Outcome | None:
        entry = look.entry
        assert entry is not None
        if not self.store.claim_ack(entry.command_id, self.instance, AckMark(entry.status, entry.reason, self.group,
                                                                              now)):
            return None  # acked by this instance already (a concurrent delivery of the same record)
        before = self.scorer.active_version
        if entry.status != "applied":
            return self._rejection(d, entry.reason or "invalid", entry.detail, now, Sighting.FOLLOW, before)
        error = self._serve(look.state)
        if look.state.version != before:
            self._follow_registry(look.state)
        if error is not None:
            return self._rejection(d, "failed", error, now, Sighting.FOLLOW, before)
        return self._applied(d, now, Sighting.FOLLOW, before)

    def _replayed(self, d: Delivery, entry: LedgerEntry, now: int) -> Outcome:
        verdict = entry.status + (f" ({entry.reason})" if entry.reason else "")
        detail = (f"replayed: {entry.command_id} was decided from {entry.ref} ({verdict}, by {entry.decided_by}); "
                  f"this copy came from {d.ref} and changes nothing")
        log.warning("control %s: %s", self.model, detail)
        return self._rejection(d, "replayed", detail, now, Sighting.REPLAYED, self.scorer.active_version)

    # ------------------------------------------------------------------------------------------ helpers
    def _applied(self, d: Delivery, now: int, sighting: Sighting, before: int | None) -> Outcome:
        ack = Ack(d.command.command_id, self.instance, "applied", self.scorer.active_version, None, now, self.model,
                  "", self.group)
        return Outcome(d.command.command, d.command.command_id, sighting.value, ack, None, before)

    def _rejection(self, d: Delivery, reason: str, detail: str, now: int, sighting: Sighting,
                   before: int | None) -> Outcome:
        error = detail if detail.startswith(reason) else f"{reason}: {detail}"
        version = self.scorer.active_version
        ack = reject(d.command.command_id, self.instance, version, error, now, self.model, reason, self.group)
        alert = command_rejected_alert(self.model, version, d.command.command, d.command.command_id, error,
                                       self.instance, now)
        return Outcome(d.command.command, d.command.command_id, sighting.value, ack, alert, before)

    def _serve(self, state: DesiredState, loaded: dict | None = None) -> str | None:
        """Converge the scorer to ``state``; the error text when it cannot (it keeps serving what it served)."""
        self.desired = state
        try:
            converge(self.scorer, state, loaded)
        except ModelError as exc:
            self.diverged = f"desired revision {state.revision} (v{state.version}) cannot be served: {exc}"
            log.error("control %s: %s", self.model, self.diverged)
            return str(exc)
        self.diverged = None
        return None

    def _registry_production(self) -> int | None:
        try:
            prod = self.registry.production(self.model)
        except RegistryError:
            prod = None
        return self.scorer.active_version if prod is None else prod.version

    def _follow_registry(self, state: DesiredState) -> None:
        """The registry's stages follow the desired champion (idempotent; a failure is logged, retried on the
        next decision or start)."""
        if state.revision == 0 or state.version is None:
            return
        try:
            self.registry.follow_desired(self.model, state.version, revision=state.revision, action=state.command,
                                         command_id=state.command_id, by=state.issued_by, reason=state.reason,
                                         alert_id=state.alert_id)
        except (ModelError, OSError) as exc:
            log.error("control %s: the registry does not follow desired revision %d yet: %s", self.model,
                      state.revision, exc)

    def status(self) -> dict[str, Any]:
        """For ``/health``: the desired state this instance serves, and whether it really does."""
        d = self.desired
        return {"desired_revision": d.revision, "desired_version": d.version, "active_version":
                self.scorer.active_version, "paused": self.scorer.paused, "diverged": self.diverged,
                "pending_commands": len(self.pending), "store_error": self.store_error}
