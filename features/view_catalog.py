"""Finding a feature view by what a user types: a name, a view file, or ``module:ATTRIBUTE``.

The catalog holds the built-in views (``features.views``) and the views the configuration names (the
``views`` list of the config file, or ``DRIFTLINE_VIEWS``). :meth:`ViewCatalog.resolve` takes

* a name known to the catalog (``vitals``, or the ``name`` of a configured view file);
* a path to a view file (``.toml``, ``.yaml``/``.yml``, ``.json``; see ``features.view_files``);
* ``package.module:ATTRIBUTE``: a :class:`FeatureView` defined in Python (or a function returning one).

Example:
    >>> catalog = ViewCatalog()
    >>> catalog.resolve("gps").entity_key, catalog.resolve("features.views:VITALS_VIEW").name
    ('vehicle_id', 'vitals')
    >>> catalog.resolve("payments")
    Traceback (most recent call last):
    ...
    features.exceptions.ViewFileError: unknown view 'payments': known views are gps, vitals; or give a view file (.toml, .yaml, .yml, .json) or module:ATTRIBUTE
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from features.definitions import FeatureView
from features.exceptions import ViewFileError
from features.view_files import FILE_SUFFIXES, load_view_file
from features.views import VIEWS

_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class CatalogEntry:
    """A view and where it came from (``built-in``, a file path, or ``module:ATTRIBUTE``)."""

    view: FeatureView
    origin: str


def is_view_file(ref: str) -> bool:
    """Does ``ref`` name a view file (by its suffix)?"""
    return Path(ref).suffix.lower() in FILE_SUFFIXES


def load_view_ref(ref: str) -> CatalogEntry:
    """Load a view from a file path or a ``module:ATTRIBUTE`` reference (not a catalog name)."""
    if is_view_file(ref) or Path(ref).is_file():
        return CatalogEntry(load_view_file(ref), ref)
    if _MODULE_REF.match(ref):
        module_name, attr = ref.split(":", 1)
        try:
            obj: object = importlib.import_module(module_name)
        except ImportError as exc:
            raise ViewFileError(f"{ref}: cannot import module {module_name!r}: {exc}", source=ref) from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ViewFileError(f"{ref}: module {module_name!r} has no attribute {attr!r}", source=ref)
            obj = getattr(obj, part)
        if callable(obj) and not isinstance(obj, FeatureView):
            obj = obj()
        if not isinstance(obj, FeatureView):
            raise ViewFileError(f"{ref}: is a {type(obj).__name__}, not a features.definitions.FeatureView "
                                "(or a function returning one)", source=ref)
        return CatalogEntry(obj, ref)
    raise ViewFileError(f"{ref}: neither a view file ({', '.join(FILE_SUFFIXES)}) nor module:ATTRIBUTE",
                        source=ref)


class ViewCatalog:
    """Built-in views plus the configured ones (``refs``: view files or ``module:ATTRIBUTE``), by name."""

    def __init__(self, refs: Iterable[str] = (), *, builtins: bool = True) -> None:
        self._entries: dict[str, CatalogEntry] = {}
        if builtins:
            for name, view in VIEWS.items():
                self._entries[name] = CatalogEntry(view, "built-in")
        for ref in refs:
            self.add(load_view_ref(ref))

    def add(self, entry: CatalogEntry) -> None:
        """Add a view; a second view of the same name is an error naming both origins."""
        name = entry.view.name
        if name in self._entries and self._entries[name].view != entry.view:
            raise ViewFileError(f"{entry.origin}: view name {name!r} is already taken by "
                                f"{self._entries[name].origin}; give one of them another name", source=entry.origin)
        self._entries[name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[CatalogEntry]:
        return [self._entries[n] for n in self.names()]

    def views(self) -> list[FeatureView]:
        return [e.view for e in self.entries()]

    def entry(self, ref: str) -> CatalogEntry:
        """The entry for a name, a view file or ``module:ATTRIBUTE`` (see the module docstring)."""
        if ref in self._entries:
            return self._entries[ref]
        if is_view_file(ref) or Path(ref).is_file() or _MODULE_REF.match(ref):
            return load_view_ref(ref)
        raise ViewFileError(f"unknown view {ref!r}: known views are {', '.join(self.names())}; or give a view "
                            f"file ({', '.join(FILE_SUFFIXES)}) or module:ATTRIBUTE", source=ref)

    def resolve(self, ref: str) -> FeatureView:
        return self.entry(ref).view
