"""One compiled object per feature view, kept by the view's identity.

Compiled plans (``features.plan``) and record checkers (``features.records``) are built once per view and
looked up on every event. A frozen view hashes all its fields, which costs microseconds per lookup, so the
cache is keyed by ``id(view)``; the entry holds the view itself, so an id cannot be reused while cached, and
the identity check catches a different view at a recycled id all the same.

Example:
    >>> from features.views import VITALS_VIEW
    >>> builds = []
    >>> names = per_view(lambda view: builds.append(view.name) or view.feature_names)
    >>> names(VITALS_VIEW) is names(VITALS_VIEW), builds
    (True, ['vitals'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from features.definitions import FeatureView

T = TypeVar("T")


def per_view(build: Callable[[FeatureView], T], max_views: int = 256) -> Callable[[FeatureView], T]:
    """``build(view)`` once per view, then the cached result; at ``max_views`` views the cache starts over
    (views are few and long-lived: the bound only matters to tests that make thousands). A closure rather than
    a class: this sits on the per-event path, and a plain function call is the cheapest lookup."""
    entries: dict[int, tuple[FeatureView, T]] = {}

    def cached(view: FeatureView) -> T:
        entry = entries.get(id(view))
        if entry is None or entry[0] is not view:
            if len(entries) >= max_views:
                entries.clear()
            entry = (view, build(view))
            entries[id(view)] = entry
        return entry[1]

    return cached
