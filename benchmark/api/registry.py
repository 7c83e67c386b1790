"""Decorator-filled registries with did-you-mean errors.

A registry entry is a plugin class plus a preset of config overrides, so a variant such as
``nais_cal`` is a second name for the same class, not a copy of its code.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from benchmark.api.plugins import Attack, Dataset, Defense, Target
from benchmark.core.errors import BenchmarkError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    cls: type[T]
    description: str
    preset: dict[str, Any] = field(default_factory=dict)  # Any: config field values, as YAML gives them


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, description: str, **preset: Any  # Any: as ``Entry.preset``
    ) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name].cls is not cls:
                raise BenchmarkError(f"{self.kind} '{name}' is registered twice; pick another name")
            self._entries[name] = Entry(name, cls, description, dict(preset))
            return cls

        return decorator

    @contextmanager
    def temporarily(
        self, name: str, cls: type[T], preset: dict[str, Any] | None = None  # Any: as ``Entry.preset``
    ) -> Iterator[str]:
        """``cls`` registered under ``name`` inside the block only (checking a class nobody registered)."""
        self.register(name, f"{cls.__name__} (temporary)", **(preset or {}))(cls)
        try:
            yield name
        finally:
            self._entries.pop(name, None)

    def has(self, name: str) -> bool:
        _load_plugins()
        return name in self._entries

    def get(self, name: str) -> Entry[T]:
        _load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(self._entries))}"
            raise BenchmarkError(f"unknown {self.kind} '{name}': {hint} (see `python -m benchmark list`)")
        return self._entries[name]

    def entries(self) -> list[Entry[T]]:
        _load_plugins()
        return [self._entries[k] for k in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        _load_plugins()
        return name in self._entries


ATTACKS: Registry[Attack] = Registry("attack")
DEFENSES: Registry[Defense] = Registry("defense")
TARGETS: Registry[Target] = Registry("target")
DATASETS: Registry[Dataset] = Registry("dataset")

PLUGIN_PACKAGES = ("attacks", "defenses", "targets", "benchmark.datasets")
_loaded = False


def _load_plugins() -> None:
    """Import every module of the plugin packages once, so their decorators fill the registries."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package_name in PLUGIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package_name}.{info.name}")
