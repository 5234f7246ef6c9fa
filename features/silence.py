"""Noticing entities that went silent (a sensor that stops sending): for vitals, silence is itself a signal.

Peers that only advance time per key never emit a silent key's last window. Here time is the *partition's*
watermark: an entity whose last event is more than ``idle_ms`` behind it is due, once per silence, and is
due again only after it has sent something new. A partition that receives nothing at all is covered by a
wall-clock idle timeout (:meth:`SilenceTracker.idle_partitions`).

Example:
    >>> t = SilenceTracker(idle_ms=60_000)
    >>> t.observe(0, "p1", 1_000); t.observe(0, "p2", 50_000)
    >>> t.due(0, watermark_ms=70_000)
    [('p1', 1000)]
    >>> t.due(0, watermark_ms=80_000)          # reported once per silence
    []
    >>> t.observe(0, "p1", 81_000); t.due(0, watermark_ms=200_000)
    [('p1', 81000), ('p2', 50000)]
"""

from __future__ import annotations


class SilenceTracker:
    def __init__(self, idle_ms: int, max_entities: int = 1_000_000) -> None:
        self.idle_ms = idle_ms
        self.max_entities = max_entities
        self.last_seen: dict[int, dict[str, int]] = {}
        self.reported: dict[int, set[str]] = {}
        self.last_activity: dict[int, float] = {}

    def observe(self, partition: int, entity_id: str, ts_ms: int, wall_s: float = 0.0) -> None:
        seen = self.last_seen.setdefault(partition, {})
        if ts_ms >= seen.get(entity_id, ts_ms):
            seen[entity_id] = ts_ms
        if len(seen) > self.max_entities:  # bound memory: forget the longest-silent entity
            oldest = min(seen, key=seen.__getitem__)
            del seen[oldest]
        self.reported.setdefault(partition, set()).discard(entity_id)
        self.last_activity[partition] = max(self.last_activity.get(partition, 0.0), wall_s)

    def due(self, partition: int, watermark_ms: int | None) -> list[tuple[str, int]]:
        """Entities of ``partition`` silent for more than ``idle_ms`` of event time, not yet reported."""
        if watermark_ms is None:
            return []
        cutoff = watermark_ms - self.idle_ms
        reported = self.reported.setdefault(partition, set())
        out = [(e, ts) for e, ts in self.last_seen.get(partition, {}).items() if ts < cutoff and e not in reported]
        reported.update(e for e, _ in out)
        return sorted(out)

    def idle_partitions(self, now_s: float, idle_wall_s: float) -> list[int]:
        """Partitions with no record for ``idle_wall_s`` of wall time (the watermark cannot advance there)."""
        return [p for p, t in self.last_activity.items() if t and now_s - t > idle_wall_s]

    def forget(self, partition: int) -> None:
        """The partition was revoked: its new owner tracks it."""
        self.last_seen.pop(partition, None)
        self.reported.pop(partition, None)
        self.last_activity.pop(partition, None)
