"""One registry helper for every kind of plug-in: attacks, objectives, zoo entries, model and
data schemes, sanity checks, audit sections and renderers.

A kind of plug-in is one :class:`Registry`. Its members are found by walking one folder (each
file registers what it defines when it is imported, as timm's model files do) and, for
third-party plug-ins, through an entry-point group. Every registry answers an unknown name the
same way: ``unknown <kind> 'x'; known: a, b, c``.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from robustness.core.errors import RobustnessError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plug-ins of one kind.

    ``kind`` names them in errors ("attack", "sanity check"); ``package`` is the folder whose
    modules define the built-in ones (imported on first lookup); ``entry_points`` is the
    entry-point group third-party packages register theirs under; ``error`` is the
    :class:`RobustnessError` subclass raised for an unknown name, with ``field``.
    """

    def __init__(
        self,
        kind: str,
        *,
        package: str | None = None,
        entry_points: str | None = None,
        error: type[RobustnessError] = RobustnessError,
        field: str | None = None,
    ) -> None:
        self.kind = kind
        self.package = package
        self.entry_points = entry_points
        self.error = error
        self.field = field
        self._items: dict[str, T] = {}
        self._loaded = False
        self._loading = False  # a module being imported may look names up (re-entrant load)

    # -- registering ------------------------------------------------------------------------
    def add(self, name: str, item: T) -> T:
        """Register ``item`` as ``name``; the same name twice for different items is a bug."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a name, got {name!r}")
        known = self._items.get(name)
        if known is not None and known is not item:
            raise ValueError(f"{self.kind} name {name!r} registered twice")
        self._items[name] = item
        return item

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register()`` uses the item's ``name`` attribute."""

        def deco(item: T) -> T:
            self.add(name if name is not None else item.name, item)  # type: ignore[attr-defined]
            return item

        return deco

    # -- finding ------------------------------------------------------------------------------
    def load(self) -> None:
        """Import every module of ``package`` and every entry point (once)."""
        if self._loaded or self._loading:
            return
        # Marked loaded only once every module imported: a plug-in that fails to import raises
        # here, and the next lookup tries again rather than answering from a partial registry.
        self._loading = True
        try:
            self._import_all()
        finally:
            self._loading = False
        self._loaded = True

    def _import_all(self) -> None:
        if self.package is not None:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
        if self.entry_points is not None:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.entry_points):
                ep.load()  # the plug-in's module registers itself when imported

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)

    def items(self) -> dict[str, T]:
        self.load()
        return dict(sorted(self._items.items()))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def get(self, name: str) -> T:
        """The plug-in called ``name``, or the registry's error naming the known ones."""
        self.load()
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        raise self.unknown(name)

    def unknown(self, name: Any) -> RobustnessError:
        """The one error for a name this registry does not know."""
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return self.error(
            f"unknown {self.kind} {name!r}",
            field=self.field,
            fix=f"Known: {', '.join(known) or '(none)'}.{hint}",
        )
