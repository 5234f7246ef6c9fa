"""A model version loaded for scoring: its registry metadata plus the verified estimator.

scikit-learn linear pipelines score through :mod:`models.fast_linear` (the same bits as ``predict_proba``,
without sklearn's per-call validation); every other estimator through its own ``predict_proba``. A batch's matrix
is written by ``models._matrix`` (C) when it is built and the vectors are what the engine emits (dicts of floats),
by Python otherwise (``DRIFTLINE_PURE_PYTHON=1`` too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from features.kernel import compiled_parts_on
from models.exceptions import ModelError
from models.fast_linear import LinearPlan, compile_verified
from models.registry import ModelVersion, Registry

try:
    from models._matrix import matrix as _compiled_matrix
except ImportError:  # built without a C compiler: the Python path serves
    _compiled_matrix = None


@dataclass(frozen=True)
class LoadedModel:
    """An immutable (metadata, estimator) pair; swapping models means swapping one of these whole."""

    meta: ModelVersion
    estimator: Any

    @property
    def version(self) -> int:
        return self.meta.version

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.meta.feature_names)

    @cached_property
    def linear_plan(self) -> LinearPlan | None:
        """The numpy fast path of a supported sklearn linear pipeline (verified once, on first use), else None."""
        if getattr(self.meta, "flavor", "sklearn") != "sklearn":
            return None
        return compile_verified(self.estimator, len(self.feature_names))

    @classmethod
    def load(cls, registry: Registry, model: str, version: int) -> LoadedModel:
        """Load a version; the registry verifies the artifact's sha256 before unpickling it."""
        meta = registry.get(model, version)
        loaded = cls(meta, registry.load(model, version))
        _ = loaded.linear_plan  # compiled and verified here, before the version serves a batch
        return loaded

    def matrix(self, vectors: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Rows in this version's declared feature order (missing names are a schema mismatch upstream).

        Example:
            >>> from types import SimpleNamespace
            >>> m = LoadedModel(SimpleNamespace(feature_names=("a", "b")), None)
            >>> m.matrix([{"b": 2.0, "a": 1.0}]).tolist()
            [[1.0, 2.0]]
        """
        names = self.feature_names
        return np.array([[v.get(n, math.nan) for n in names] for v in vectors], dtype=np.float64).reshape(
            len(vectors), len(names))

    @cached_property
    def _compiled(self) -> bool:
        """Whether :meth:`fit_matrix` tries ``models._matrix`` first (built, not turned off)."""
        return _compiled_matrix is not None and compiled_parts_on()

    @cached_property
    def _row_getter(self) -> Callable[[Mapping[str, float]], tuple[float, ...]] | None:
        names = self.feature_names
        if len(names) < 2:  # itemgetter of one name returns a bare value; a rare shape keeps the per-row path
            return None
        return itemgetter(*names)

    def fit_matrix(self, vectors: Sequence[Mapping[str, float]]) -> np.ndarray | None:
        """The batch's matrix in one pass when every vector fits (every feature present and a ``float``, as
        the engine emits them), else ``None`` and the caller checks row by row (:meth:`schema_mismatch`).

        When it returns a matrix, it equals ``matrix(vectors)`` and every row's ``schema_mismatch`` is None.

        Example:
            >>> from types import SimpleNamespace
            >>> m = LoadedModel(SimpleNamespace(feature_names=("a", "b")), None)
            >>> m.fit_matrix([{"b": 2.0, "a": 1.0}, {"a": 3.0, "b": 4.0}]).tolist()
            [[1.0, 2.0], [3.0, 4.0]]
            >>> m.fit_matrix([{"a": 1.0}]) is None, m.fit_matrix([{"a": 1.0, "b": 2}]) is None
            (True, True)
        """
        get = self._row_getter
        if get is None or not vectors:
            return None
        if self._compiled:
            packed = _compiled_matrix(vectors if type(vectors) is list else list(vectors), self.feature_names)
            if packed is not None:  # else something only Python reads as it does: it decides below
                return np.frombuffer(packed, np.float64).reshape(len(vectors), len(self.feature_names))
        try:  # one flat list of the batch's values (half the cost of a list of row tuples into numpy)
            flat = list(chain.from_iterable(map(get, vectors)))
        except (KeyError, TypeError):
            return None
        if not set(map(type, flat)) <= {float}:
            return None
        return np.fromiter(flat, np.float64, len(flat)).reshape(len(vectors), len(self.feature_names))

    def schema_mismatch(self, vector: Mapping[str, float]) -> str | None:
        """Why ``vector`` does not fit this version's declared schema, or ``None`` when it does."""
        names = self.feature_names
        try:  # the common case, one pass: every feature present and a float (the engine emits floats)
            if all(type(vector[n]) is float for n in names):
                return None
        except KeyError:
            pass
        missing = [n for n in self.feature_names if n not in vector]
        if missing:
            return f"missing features {missing[:5]}"
        wrong = [n for n in self.feature_names if not isinstance(vector[n], (int, float)) or isinstance(vector[n], bool)]
        return f"non-numeric features {wrong[:5]}" if wrong else None

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row: one call per batch."""
        if len(X) == 0:
            return np.empty(0)
        flavor = getattr(self.meta, "flavor", "sklearn")
        if flavor == "river":
            names = self.feature_names
            out = []
            for row in X:
                proba = self.estimator.predict_proba_one(dict(zip(names, row.tolist(), strict=True)))
                out.append(float(proba.get(1, proba.get(True, 0.0))))
            return np.asarray(out)
        plan = self.linear_plan
        fast = plan.scores(X) if plan is not None else None
        if fast is not None:
            return fast
        try:
            proba = self.estimator.predict_proba(X)
        except Exception as exc:  # noqa: BLE001 - any model failure becomes one typed error
            raise ModelError(f"model {self.meta.model} v{self.version} failed on a batch: {exc}") from exc
        return np.asarray(proba)[:, 1]
