"""Per-kind hooks a layer above the registry keeps for itself (the MLflow sink's metrics and step
images, the API's record JSON and compare maps, the drift detectors' signals): each such layer
owns one :class:`HookTable`, and each kind registers its entry from its own ``kind.py``. The kind
registry (:mod:`.kinds`) stays a description of data that no backend has to extend.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class HookTable(Generic[T]):
    """``kind name -> T``, filled by the kinds as they load.

    ``what`` names the table in errors (``"MLflow hooks"``); every entry must be an instance of
    ``expected``.
    """

    def __init__(self, what: str, expected: type):
        self.what = what
        self.expected = expected
        self._table: dict[str, T] = {}
        self._lock = threading.Lock()

    def register(self, kind: str, value: T) -> T:
        """Set ``kind``'s entry (once: a second, different entry for one kind is an error)."""
        if not isinstance(value, self.expected):
            raise TypeError(f"{self.what}: expected a {self.expected.__name__} for kind "
                            f"{kind!r}, got {type(value).__name__}")
        with self._lock:
            if kind in self._table and self._table[kind] is not value:
                raise ValueError(f"kind: {self.what} of {kind!r} are already registered")
            self._table[kind] = value
        return value

    def get(self, kind: str) -> T | None:
        """``kind``'s entry, or None. The built-in kinds are loaded first (they register their
        entries when they load)."""
        from deepvid_plugin.core import kinds

        kinds.names()
        return self._table.get(kind)


__all__ = ["HookTable"]
