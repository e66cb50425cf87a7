"""One generic registry: register under a unique name, get with a did-you-mean on a miss, list with patterns."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from medtransfer.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `package` that imports ``package.<names[attr]>`` on first use of ``attr``.

    Keeps a light submodule (the store, the metrics) importable without its package's heavy siblings (torch);
    the attribute is cached on the package after its first use.

    Examples:
        >>> __getattr__ = lazy_attributes(__name__, {"run_grid": "local"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def did_you_mean(name: str, choices: list[str], *, n: int = 3) -> str:
    """Return " Did you mean 'a', 'b'?" for the closest choices, or "" when none is close."""
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        # Prefix/substring matches help for long family names ("resnet" -> "resnet18", "resnet50").
        close = [c for c in sorted(choices) if name.lower() in c.lower()][:n] if len(name) >= 3 else []
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    """Named entries of one kind (models, datasets, protocols ...).

    Examples:
        >>> MODELS: Registry[int] = Registry("model")
        >>> MODELS.add("resnet18", 18)
        >>> MODELS.get("resnet18")
        18
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        """Register `entry` under `name`; a second entry with the same name is an error, not a silent override."""
        if name in self._entries:
            raise ConfigError(f"A {self.kind} named {name!r} is already registered; pick another name.")
        self._entries[name] = entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""

        def deco(entry: T) -> T:
            self.add(name, entry)
            return entry

        return deco

    def get(self, name: str) -> T:
        """Return the entry named `name`; an unknown name raises UnknownNameError with the closest names."""
        try:
            return self._entries[name]
        except KeyError:
            hint = did_you_mean(name, list(self._entries))
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{hint} See `medtransfer {self.kind}s list` for all names."
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching the fnmatch `pattern` ("moco*", "*mnist-64")."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
