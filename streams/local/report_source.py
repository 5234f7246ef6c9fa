"""Gathering a report's data: the monitor's history (Redis), the registry (reference profiles, production changes).

This is the adapter between the running system and the pure :mod:`monitor.report`. Another source (durable
control history, incidents, alert deliveries) adds its records here: events become
:class:`monitor.report.model.Event` through :func:`monitor.report.assemble.assemble`, version changes
through ``version_changes``.

Times on the command line (:func:`parse_time`): ``15m`` / ``2h`` / ``1d`` ago, ``now``, RFC 3339, or epoch ms.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from pathlib import Path

from models.exceptions import RegistryError
from models.registry import Registry
from monitor.exceptions import ProfileError
from monitor.history import HistoryStore
from monitor.reference import ReferenceProfile
from monitor.report.assemble import References, assemble
from monitor.report.model import ReportData
from streams.exceptions import ConfigError

__all__ = ["gather", "parse_time", "pick_model", "production_changes"]

log = logging.getLogger(__name__)
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms of ``text``: ``now``, a duration ago (``90s``, ``15m``, ``2h``, ``1d``), RFC 3339, or epoch ms.

    >>> now = 1_800_000_000_000
    >>> parse_time("15m", now) == now - 900_000, parse_time("now", now) == now
    (True, True)
    >>> parse_time("2027-01-15T08:00:00Z", now), parse_time("1799999999000", now)
    (1800000000000, 1799999999000)
    >>> parse_time("yesterday", now)
    Traceback (most recent call last):
    ...
    streams.exceptions.ConfigError: cannot read time 'yesterday': use now, 15m / 2h / 1d (ago), RFC 3339 or epoch ms
    """
    t = text.strip().lower()
    if t == "now":
        return now_ms
    m = _AGO.match(t)
    if m:
        return now_ms - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if t.isdigit():
        return int(t)
    try:
        return int(datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ConfigError(f"cannot read time {text!r}: use now, 15m / 2h / 1d (ago), RFC 3339 or epoch ms") from None


def pick_model(history: HistoryStore, registry: Registry, model: str | None) -> str:
    """``model`` if given, else the only model with a history (or in the registry); ConfigError otherwise."""
    if model:
        return model
    known = history.models() or registry.models()
    if len(known) == 1:
        return known[0]
    if not known:
        raise ConfigError("no model has a history yet: run the monitor (`driftline run monitor`) or "
                          "`driftline demo`, or name one with --model")
    raise ConfigError(f"several models have a history ({', '.join(known)}): choose one with --model")


def production_changes(registry: Registry, model: str) -> list[tuple[int, int | None]]:
    """``(at_ms, production version)`` after each promote / rollback in the registry's history."""
    try:
        history = registry.history(model)
    except RegistryError:
        return []
    return [(int(e.get("at") or 0), e.get("version")) for e in history
            if e.get("action") in ("promote", "rollback") and e.get("version") is not None]


def _references(registry: Registry, model: str, versions: set[int], notes: list[str]) -> References:
    refs = {}
    for version in sorted(versions):
        try:
            profile = ReferenceProfile.from_dict(registry.get(model, version).reference)
        except (RegistryError, ProfileError, KeyError, TypeError) as exc:
            notes.append(f"v{version}: no reference profile in the registry at {registry.root} ({exc})")
            continue
        refs[version] = (profile.features, profile.score)
    return refs


def gather(history: HistoryStore, registry: Registry, model: str, since_ms: int, until_ms: int,
           now_ms: int | None = None) -> ReportData:
    """The report of ``model`` over ``[since_ms, until_ms]`` from the history and the registry."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if until_ms <= since_ms:
        raise ConfigError(f"the report's range is empty: --since ({since_ms}) must be before --until ({until_ms})")
    snaps = history.snapshots(model, since_ms, until_ms)
    events = history.events(model, since_ms, until_ms)
    notes: list[str] = []
    refs = _references(registry, model, {int(s["version"]) for s in snaps if "version" in s}, notes)
    return assemble(model, snaps, events, refs, since_ms=since_ms, until_ms=until_ms, now_ms=now_ms,
                    version_changes=production_changes(registry, model), notes=notes)


def default_path(reports_dir: Path, model: str, now_ms: int) -> Path:
    """``<reports_dir>/<model>-<UTC time>.html``.

    >>> default_path(Path("r"), "m", 1_800_000_000_000).name
    'm-20270115T080000Z.html'
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ms / 1000))
    return reports_dir / f"{model}-{stamp}.html"
