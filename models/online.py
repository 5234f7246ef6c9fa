"""Online learning of a river champion from delayed labels (``learn_one``), off by default.

The registry-loaded champion is never mutated. :class:`OnlineLearner` learns on a private working copy; after a
batch of labels it :meth:`~OnlineLearner.publish`\\ es a fresh deep copy as a new :class:`LoadedModel` (same
registry metadata, so predictions keep the parent's version number), and :func:`install` swaps it into the
scorer with one assignment. The pipeline does both between batches, so no event is ever scored by a
half-updated model: the same rule as a hot swap.

Every ``checkpoint_every`` labels, :meth:`~OnlineLearner.checkpoint` hands out a copy for the edge to register
as a new ``staging`` version tagged ``{"origin": "online", "parent": "<version>"}`` (never promoted here).

Pure: no Kafka, Redis or Prometheus.

Example:
    >>> from types import SimpleNamespace
    >>> from river import linear_model
    >>> meta = SimpleNamespace(version=3, flavor="river", feature_names=("x",))
    >>> learner = OnlineLearner(LoadedModel(meta, linear_model.LogisticRegression()), checkpoint_every=2)
    >>> learner.learn([LabeledExample({"x": 1.0}, 1), LabeledExample({"x": -1.0}, 0)])
    2
    >>> published = learner.publish()
    >>> published.version, published.estimator.predict_proba_one({"x": 1.0})[True] > 0.5
    (3, True)
    >>> learner.checkpoint_due, learner.checkpoint()[1]
    (True, {'origin': 'online', 'parent': '3', 'labels_learned': '2'})
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from models.exceptions import ModelError
from models.loaded import LoadedModel
from models.scorer import ActiveModels, Scorer

__all__ = ["LabeledExample", "LearnStats", "OnlineLearner", "is_river", "install"]


@dataclass(frozen=True, slots=True)
class LabeledExample:
    """What ``learn_one`` needs: the feature snapshot served at prediction time and the true label."""

    features: Mapping[str, float]
    label: int


@dataclass
class LearnStats:
    """Counters of one learner (since it was created or last re-based)."""

    learned: int = 0
    skipped: int = 0          # snapshots missing a feature or holding a non-finite value
    since_checkpoint: int = 0
    checkpoints: int = 0
    rebased: int = 0


def is_river(model: LoadedModel) -> bool:
    """Whether ``model`` is a river estimator that can learn online (flavor ``river`` with ``learn_one``).

    >>> from types import SimpleNamespace
    >>> is_river(LoadedModel(SimpleNamespace(flavor="sklearn"), object()))
    False
    """
    return getattr(model.meta, "flavor", "sklearn") == "river" and callable(getattr(model.estimator, "learn_one", None))


class OnlineLearner:
    """Learns a working copy of a river champion; publishes immutable copies to serve between batches.

    ``target`` converts a 0/1 label to what the estimator was trained on (``bool`` for river's binary
    classifiers, whose ``predict_proba_one`` answers ``{False: p0, True: p1}``).
    """

    def __init__(self, base: LoadedModel, *, checkpoint_every: int = 0,
                 target: Callable[[int], Any] = bool) -> None:
        if checkpoint_every < 0:
            raise ModelError(f"checkpoint_every must be >= 0 (0 = never), got {checkpoint_every}")
        self.checkpoint_every = checkpoint_every
        self.target = target
        self.stats = LearnStats()
        self._rebase(base)

    def _rebase(self, base: LoadedModel) -> None:
        if not is_river(base):
            raise ModelError(f"model {getattr(base.meta, 'model', '?')} v{base.version} is not a river estimator "
                             "with learn_one; online learning needs flavor='river'")
        self.base = base
        self.published: LoadedModel = base
        self.working = copy.deepcopy(base.estimator)
        self.stats.learned = self.stats.skipped = self.stats.since_checkpoint = 0

    @property
    def version(self) -> int:
        """The registry version the learned model descends from."""
        return self.base.version

    def follows(self, champion: LoadedModel) -> bool:
        """Whether ``champion`` is this learner's base or its latest published copy (not swapped away)."""
        return champion is self.published or champion is self.base

    def rebase(self, champion: LoadedModel) -> None:
        """Start over from a new champion (after a hot swap): what was learned on the old one is dropped."""
        self._rebase(champion)
        self.stats.rebased += 1

    def learn(self, examples: Iterable[LabeledExample]) -> int:
        """``learn_one`` on the working copy for each usable example; returns how many were learned.

        An example missing one of the model's features, or holding a non-finite value, is skipped (counted):
        a NaN would poison the weights for good.
        """
        names = self.base.feature_names
        learned = 0
        for ex in examples:
            try:
                x = {n: float(ex.features[n]) for n in names}
            except (KeyError, TypeError, ValueError):
                self.stats.skipped += 1
                continue
            if not all(math.isfinite(v) for v in x.values()):
                self.stats.skipped += 1
                continue
            self.working.learn_one(x, self.target(int(ex.label)))
            learned += 1
        self.stats.learned += learned
        self.stats.since_checkpoint += learned
        return learned

    def publish(self) -> LoadedModel:
        """A new immutable (metadata, deep copy of the working estimator) to serve from the next batch on."""
        self.published = LoadedModel(self.base.meta, copy.deepcopy(self.working))
        return self.published

    @property
    def checkpoint_due(self) -> bool:
        """True once ``checkpoint_every`` labels were learned since the last checkpoint (never when 0)."""
        return self.checkpoint_every > 0 and self.stats.since_checkpoint >= self.checkpoint_every

    def checkpoint(self) -> tuple[Any, dict[str, str]]:
        """``(estimator copy, registry tags)`` to register as a staging version; resets the countdown."""
        self.stats.since_checkpoint = 0
        self.stats.checkpoints += 1
        tags = {"origin": "online", "parent": str(self.version), "labels_learned": str(self.stats.learned)}
        return copy.deepcopy(self.working), tags


def install(scorer: Scorer, model: LoadedModel) -> ActiveModels:
    """Serve ``model`` as the scorer's champion (challenger and split unchanged) in one assignment.

    Call between batches only, like :meth:`Scorer.swap_to`; ``model`` must be the current champion's version.
    """
    current = scorer.active
    if model.version != current.champion.version:
        raise ModelError(f"install: v{model.version} is not the serving champion v{current.champion.version}; "
                         "use swap_to for a version change")
    nxt = ActiveModels(model, current.challenger, current.split)
    scorer._active = nxt  # noqa: SLF001 - the scorer's one swap point: a single attribute assignment
    return nxt
