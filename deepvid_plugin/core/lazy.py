"""Lazy package exports (PEP 562): ``from package import Name`` imports the defining module on
first use.

Package ``__init__`` files of this project stay light so that TensorBoard's plugin loader and the
readers can import a kind's description (``methods/<kind>/kind.py``, numpy only) without pulling
in torch through the package's engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names`` maps each exported name to the
    submodule (relative to ``package``) that defines it."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
