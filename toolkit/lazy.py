"""Modules imported on first use, so that a command which does not need them does not pay for importing them."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it when one of its attributes is first read.

    Not the standard library's ``importlib.util.LazyLoader``: before Python 3.12.3 its module is not thread-safe on
    first use (fleet runs read modules from several threads), and it would sit half-loaded in ``sys.modules`` for
    every other importer. This proxy lives only where it is assigned; the import itself is Python's, under its lock."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """A :class:`LazyModule` for ``name`` (typed Any: it answers the module's attributes)."""
    return LazyModule(name)
