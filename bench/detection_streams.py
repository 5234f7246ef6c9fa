"""The error streams of ``bench.detection_bench``: prequential 0/1 errors of a river ``HoeffdingTreeClassifier`` on
SEA and Agrawal concept-drift streams, and Bernoulli streams; cached on disk because the trees are slow.

Families (``n`` events each, one stream per seed):

- ``sea_sudden`` / ``sea_gradual``: SEA (10 % label noise) whose concept moves through variants 0 → 1 → 2 → 3 at
  ``changes`` (25k, 50k, 75k of 100k), width 1 (sudden) or 5,000 (gradual);
- ``agrawal_sudden`` / ``agrawal_gradual``: Agrawal (perturbation 0.1) through classification functions
  0 → 2 → 5 → 8 at the same points;
- ``bernoulli_changes``: i.i.d. errors whose rate rises at each change point by a factor drawn in [1.3, 2.0] from
  a start in [0.05, 0.2] (an error rate that falls is no incident for the policy, see ``monitor.concept``);
- ``sea_stationary`` / ``agrawal_stationary`` / ``bernoulli_stationary``: no change at all (the trees still learn:
  their error falls over the first tens of thousands of events; Bernoulli rates 0.02, 0.1 and 0.3).

Each change of width ``w`` is river's ``ConceptDriftStream`` sigmoid ``P(new) = 1 / (1 + exp(-4 (t - p) / w))``,
nested so that each change mixes everything before it with the next concept (positions then count events of the
whole stream). river's own ``__iter__`` overflows ``math.exp`` for width 1 far from the position, so the bench
subclasses it with the exponent clamped (same draws otherwise). The *onset* of a change is ``p - w / 2`` (the new
concept at 12 %); for a sudden change, ``p``.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import river
from river import tree
from river.datasets import synth

SEA_VARIANTS = (0, 1, 2, 3)
AGRAWAL_FUNCTIONS = (0, 2, 5, 8)
STATIONARY_RATES = (0.02, 0.1, 0.3)
CACHE_VERSION = 1  # bump when a stream's recipe changes


@dataclass(frozen=True)
class Family:
    """One family of streams: what generates them, where they change, how long, how many seeds."""

    name: str
    source: str                  # sea | agrawal | bernoulli
    width: int                   # 1: sudden; larger: gradual; 0: stationary
    changes: tuple[int, ...]     # change positions (the sigmoid's centre)
    n: int
    seeds: int

    @property
    def onsets(self) -> list[int]:
        """Where each change starts: its position, minus half its width for a gradual one."""
        return [p - self.width // 2 if self.width > 1 else p for p in self.changes]

    @property
    def stationary(self) -> bool:
        return not self.changes


def families(tiny: bool = False, seeds: int | None = None) -> list[Family]:
    """The benchmark's families; ``tiny``: 6,000 events, gradual width 300, one seed (the smoke test)."""
    n, width, ht, bern = (6_000, 300, 1, 1) if tiny else (100_000, 5_000, 5, 10)
    if seeds:
        ht, bern = seeds, 2 * seeds
    changes = (n // 4, n // 2, 3 * n // 4)
    return [Family("sea_sudden", "sea", 1, changes, n, ht), Family("sea_gradual", "sea", width, changes, n, ht),
            Family("agrawal_sudden", "agrawal", 1, changes, n, ht),
            Family("agrawal_gradual", "agrawal", width, changes, n, ht),
            Family("bernoulli_changes", "bernoulli", 1, changes, n, bern),
            Family("sea_stationary", "sea", 0, (), n, ht), Family("agrawal_stationary", "agrawal", 0, (), n, ht),
            Family("bernoulli_stationary", "bernoulli", 0, (), n, bern)]


class _Drift(synth.ConceptDriftStream):
    """river's ``ConceptDriftStream`` with the sigmoid's exponent clamped (width 1 overflows ``math.exp``)."""

    def __iter__(self) -> Iterator[tuple[dict, object]]:
        rng = random.Random(self.seed)
        old, new = iter(self.stream), iter(self.drift_stream)
        i = 0
        while True:
            i += 1
            v = -4.0 * float(i - self.position) / float(self.width)
            p_new = 0.0 if v > 700 else 1.0 / (1.0 + math.exp(v))
            try:
                yield next(new) if rng.random() <= p_new and p_new > 0 else next(old)
            except StopIteration:
                return


def _concepts(fam: Family, seed: int) -> list:
    if fam.source == "sea":
        return [synth.SEA(variant=v, noise=0.1, seed=seed * 100 + k) for k, v in enumerate(SEA_VARIANTS)]
    return [synth.Agrawal(classification_function=f, perturbation=0.1, seed=seed * 100 + k)
            for k, f in enumerate(AGRAWAL_FUNCTIONS)]


def _tree_errors(fam: Family, seed: int) -> np.ndarray:
    concepts = _concepts(fam, seed)
    stream = concepts[0]
    for k, pos in enumerate(fam.changes, start=1):
        stream = _Drift(stream=stream, drift_stream=concepts[k], position=pos, width=fam.width, seed=seed * 10 + k)
    model = tree.HoeffdingTreeClassifier()
    out = np.empty(fam.n, dtype=np.int8)
    for i, (x, y) in enumerate(stream.take(fam.n)):
        out[i] = model.predict_one(x) != y  # prequential: predict, then learn
        model.learn_one(x, y)
    return out


def bernoulli_rates(fam: Family, seed: int) -> list[float]:
    """The error rate of each segment of a Bernoulli stream."""
    if fam.stationary:
        return [STATIONARY_RATES[seed % len(STATIONARY_RATES)]]
    rng = np.random.default_rng([seed, 0xB])
    rates = [float(rng.uniform(0.05, 0.2))]
    for _ in fam.changes:
        rates.append(min(0.5, rates[-1] * float(rng.uniform(1.3, 2.0))))
    return rates


def _bernoulli_errors(fam: Family, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0xE])
    bounds = [0, *fam.changes, fam.n]
    p = np.concatenate([np.full(b - a, r) for a, b, r in zip(bounds[:-1], bounds[1:], bernoulli_rates(fam, seed),
                                                              strict=True)])
    return (rng.random(fam.n) < p).astype(np.int8)


def error_stream(fam: Family, seed: int, cache: Path | None = None) -> np.ndarray:
    """The 0/1 error stream of ``fam`` for ``seed`` (int8), read from / written to ``cache`` when given."""
    if fam.source == "bernoulli":
        return _bernoulli_errors(fam, seed)
    recipe = f"{CACHE_VERSION}|{fam.source}|{fam.width}|{fam.changes}|{fam.n}|{seed}|river {river.__version__}"
    path = None
    if cache is not None:
        path = cache / f"{fam.name}-{seed}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.npy"
        if path.exists():
            return np.unpackbits(np.load(path))[: fam.n].astype(np.int8)
    errors = _tree_errors(fam, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.packbits(errors.astype(np.uint8)))
        tmp.replace(path)
    return errors
