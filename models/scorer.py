"""The streaming scorer: micro-batches of feature vectors → predictions, with routing and hot swap.

The active set of models (champion, optional challenger, traffic split) is one immutable snapshot held in a
single attribute. ``apply`` builds the next snapshot completely (loading and verifying artifacts) before the
assignment that swaps it in, and the pipeline calls it only between batches: no event is ever scored by a
half-loaded model, and none is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from models.breaker import CircuitBreaker
from models.exceptions import ModelError, RegistryError
from models.frozen import fast_frozen_init
from models.loaded import LoadedModel
from models.prediction import Prediction
from models.prediction_columns import PredictionColumns
from models.registry import Registry
from models.routing import TrafficSplit, route

log = logging.getLogger(__name__)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ScoringRow:
    """One event's features, ready to score. ``event_key`` is stable across replays (``topic-partition-offset``)."""

    event_key: str
    entity_id: str
    event_ts: int
    features: dict[str, float]


class ScoringRows(Sequence[ScoringRow]):
    """A batch's rows held as columns (the pipeline appends to them): the scorer's common case reads the columns,
    every other path sees :class:`ScoringRow` objects, built when indexed.

    >>> rows = ScoringRows()
    >>> rows.append("t-0-7", "p1", 1000, {"hr": 80.0})
    >>> len(rows), rows[0]
    (1, ScoringRow(event_key='t-0-7', entity_id='p1', event_ts=1000, features={'hr': 80.0}))
    """

    __slots__ = ("event_keys", "entity_ids", "event_ts", "features")

    def __init__(self) -> None:
        self.event_keys: list[str] = []
        self.entity_ids: list[str] = []
        self.event_ts: list[int] = []
        self.features: list[dict[str, float]] = []

    def append(self, event_key: str, entity_id: str, event_ts: int, features: dict[str, float]) -> None:
        self.event_keys.append(event_key)
        self.entity_ids.append(entity_id)
        self.event_ts.append(event_ts)
        self.features.append(features)

    def __len__(self) -> int:
        return len(self.event_keys)

    def __getitem__(self, i: int) -> ScoringRow:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("ScoringRows: index rows one at a time")
        return ScoringRow(self.event_keys[i], self.entity_ids[i], self.event_ts[i], self.features[i])


def _feature_maps(rows: Sequence[ScoringRow]) -> list[dict[str, float]]:
    """The feature maps of ``rows`` (a ``ScoringRows`` column as it is)."""
    return rows.features if isinstance(rows, ScoringRows) else [r.features for r in rows]


def _columns(rows: Sequence[ScoringRow]) -> tuple[list[str], list[str], list[int], list[dict[str, float]]]:
    """(event keys, entity ids, event times, feature maps) of ``rows``."""
    if isinstance(rows, ScoringRows):
        return rows.event_keys, rows.entity_ids, rows.event_ts, rows.features
    return [r.event_key for r in rows], [r.entity_id for r in rows], [r.event_ts for r in rows], _feature_maps(rows)


@dataclass(frozen=True)
class ActiveModels:
    champion: LoadedModel
    challenger: LoadedModel | None
    split: TrafficSplit

    @property
    def by_version(self) -> dict[int, LoadedModel]:
        out = {self.champion.version: self.champion}
        if self.challenger is not None:
            out[self.challenger.version] = self.challenger
        return out


@dataclass(frozen=True, slots=True)
class ScorerEvent:
    """Something an operator must hear about: ``schema_drift``, ``breaker_open``, ``breaker_closed``."""

    kind: str
    version: int
    detail: str
    rows: int = 0


@dataclass(frozen=True)
class ScoreResult:
    """A batch's predictions, one :class:`PredictionColumns` per (version, variant) served, in serving order."""

    groups: list[PredictionColumns]
    schema_mismatches: list[tuple[ScoringRow, int, str]]  # (row, version, why): not scored by that version
    events: list[ScorerEvent] = field(default_factory=list)

    @property
    def predictions(self) -> list[Prediction]:
        """Every prediction as an object (built on each call: the pipeline encodes from the columns)."""
        return [p for group in self.groups for p in group.predictions()]

    @property
    def count(self) -> int:
        """How many predictions the batch gave."""
        return sum(map(len, self.groups))


class Scorer:
    """Scores batches with the registry's production version (plus an optional challenger)."""

    def __init__(self, registry: Registry, model: str, *, threshold: float = 0.5, include_features: bool = True,
                 clock: Callable[[], float] = time.time,
                 breaker_factory: Callable[[], CircuitBreaker] = CircuitBreaker) -> None:
        self.registry = registry
        self.model = model
        self.threshold = threshold
        self.include_features = include_features
        self.clock = clock
        self._active: ActiveModels | None = None
        self.paused = False
        self.fallback: LoadedModel | None = None  # the previous good version, serves when the champion cannot
        self.breaker_factory = breaker_factory
        self.breakers: dict[int, CircuitBreaker] = {}

    @property
    def active(self) -> ActiveModels:
        if self._active is None:
            raise ModelError("scorer not started: call start() first")
        return self._active

    @property
    def active_version(self) -> int | None:
        return None if self._active is None else self._active.champion.version

    def start(self, version: int | None = None) -> ActiveModels:
        """Load ``version`` (the desired champion), or the registry's production version (fails loudly if there is
        none)."""
        if version is None:
            prod = self.registry.production(self.model)
            if prod is None:
                raise RegistryError(f"model {self.model!r} has no production version; run `driftline registry promote`")
            version = prod.version
        champion = LoadedModel.load(self.registry, self.model, version)
        self._active = ActiveModels(champion, None, TrafficSplit(champion=champion.version))
        self.fallback = self._load_fallback(champion.version)
        log.info("scorer: serving %s v%d", self.model, champion.version)
        return self._active

    def load(self, version: int) -> LoadedModel:
        """``version`` loaded and verified (the active one if it serves already); raises on failure."""
        return self.active.by_version.get(version) or LoadedModel.load(self.registry, self.model, version)

    def swap_to(self, version: int, loaded: LoadedModel | None = None) -> ActiveModels:
        """Serve ``version`` as champion (challenger dropped). Loads before swapping (unless ``loaded`` is that
        version, loaded already); raises on failure."""
        current = self.active
        champion = loaded if loaded is not None and loaded.version == version else self.load(version)
        nxt = ActiveModels(champion, None, TrafficSplit(champion=version))
        self._active = nxt
        if self.fallback is None or self.fallback.version == version:
            self.fallback = current.champion if current.champion.version != version else None
        log.info("scorer: swapped %s v%d -> v%d", self.model, current.champion.version, version)
        return nxt

    def set_traffic(self, challenger: int | None, canary_pct: float, shadow: bool,
                    loaded: LoadedModel | None = None) -> ActiveModels:
        """Route ``canary_pct`` % of entities to ``challenger`` (and/or shadow-score it)."""
        current = self.active
        if challenger is None:
            loaded = None
        elif loaded is None or loaded.version != challenger:
            loaded = self.load(challenger)
        split = replace(current.split, champion=current.champion.version, challenger=challenger,
                        canary_pct=float(canary_pct) if loaded else 0.0, shadow=bool(shadow) and loaded is not None)
        self._active = ActiveModels(current.champion, loaded, split)
        return self._active

    def score(self, rows: Sequence[ScoringRow]) -> ScoreResult:
        """One ``predict_scores`` call per routed version for the whole batch.

        Rows a version cannot take (schema mismatch) and batches it fails on (exception or non-finite score;
        its circuit breaker counts them) are served by the fallback instead; shadow rows are then dropped,
        never served.
        """
        active = self.active
        models = active.by_version
        out = ScoreResult([], [], [])  # groups, schema mismatches, events
        now = int(self.clock() * 1000)
        if active.split.challenger is None:  # the common case first: every row to the champion, all in one matrix
            champion = models[active.split.champion]
            X = champion.fit_matrix(_feature_maps(rows))
            if X is not None:  # what the general path below does for it, without its per-row bookkeeping
                scores = self._guarded_scores(champion, rows, out, X)
                if scores is None:
                    self._serve_fallback(list(rows), out, now)
                else:
                    self._emit(out, rows, scores, champion.version, "champion", now)
                return out
        groups: dict[int, list[tuple[ScoringRow, str]]] = defaultdict(list)  # by version: a challenger that
        if active.split.challenger is None:                                   # serves and shadows is called once
            groups[active.split.champion] = [(row, "champion") for row in rows]  # what `route` gives every row
        else:
            for row in rows:
                for a in route(row.entity_id, active.split):
                    groups[a.version].append((row, a.variant))
        for version, group in groups.items():
            model = models[version]
            # the batch path: one matrix for the whole group when every row fits (the engine's own vectors)
            X = model.fit_matrix([r.features for r, _ in group])
            fit: list[tuple[ScoringRow, str]] = group if X is not None else []
            misfit: list[tuple[ScoringRow, str]] = []
            for row, variant in group if X is None else ():
                why = model.schema_mismatch(row.features)
                if why is None:
                    fit.append((row, variant))
                else:
                    misfit.append((row, variant))
                    out.schema_mismatches.append((row, version, why))
            if misfit:
                out.events.append(ScorerEvent("schema_drift", version, out.schema_mismatches[-1][2], len(misfit)))
            scores = self._guarded_scores(model, [r for r, _ in fit], out, X) if fit else np.empty(0)
            if scores is None:
                misfit, fit = misfit + fit, []
                scores = np.empty(0)
            by_variant: dict[str, list[int]] = defaultdict(list)
            for i, (_, variant) in enumerate(fit):
                by_variant[variant].append(i)
            for variant, idx in by_variant.items():
                self._emit(out, [fit[i][0] for i in idx], scores[idx], version, variant, now)
            served_misfit = [row for row, variant in misfit if variant != "shadow"]
            if served_misfit:
                self._serve_fallback(served_misfit, out, now)
        return out

    def _guarded_scores(self, model: LoadedModel, rows: list[ScoringRow], out: ScoreResult,
                        X: np.ndarray | None = None) -> np.ndarray | None:
        """Scores, or ``None`` when the version's breaker is open or this batch failed (``X``: the rows' matrix
        when built already)."""
        breaker = self.breakers.setdefault(model.version, self.breaker_factory())
        if not breaker.allow():
            return None
        was = breaker.state
        try:
            scores = model.predict_scores(model.matrix(_feature_maps(rows)) if X is None else X)
            ok = bool(np.all(np.isfinite(scores)))
            error = "" if ok else "non-finite scores"
        except ModelError as exc:
            scores, ok, error = None, False, str(exc)
        breaker.record(ok)
        if breaker.state == "open" and was != "open":
            out.events.append(ScorerEvent("breaker_open", model.version, error or "error rate", len(rows)))
            log.error("scorer: breaker open for %s v%d: %s", self.model, model.version, error)
        elif breaker.state == "closed" and was == "half_open":
            out.events.append(ScorerEvent("breaker_closed", model.version, "probe succeeded", len(rows)))
        return scores if ok else None

    def _serve_fallback(self, rows: list[ScoringRow], out: ScoreResult, now: int) -> None:
        fb = self.fallback
        if fb is not None and not any(fb.schema_mismatch(r.features) for r in rows):
            scores = self._guarded_scores(fb, rows, out)
            if scores is not None:
                self._emit(out, rows, scores, fb.version, "fallback", now)
                return
        prior = float(self.active.champion.meta.reference.get("mean_score", float("nan")) or float("nan"))
        self._emit(out, rows, np.full(len(rows), prior), 0, "fallback", now)

    def _emit(self, out: ScoreResult, rows: Sequence[ScoringRow], scores: np.ndarray, version: int, variant: str,
              now: int) -> None:
        if not rows:
            return
        keys, entities, times, features = _columns(rows)
        out.groups.append(PredictionColumns.of(
            keys, entities, times, features if self.include_features else None, np.asarray(scores),
            model=self.model, version=version, variant=variant, scored_at=now, threshold=self.threshold))

    def _load_fallback(self, champion_version: int) -> LoadedModel | None:
        target = self.registry.rollback_target(self.model, exclude={champion_version})
        if target is None:
            return None
        try:
            return LoadedModel.load(self.registry, self.model, target.version)
        except ModelError as exc:
            log.warning("scorer: no fallback model (v%d refused: %s)", target.version, exc)
            return None
