"""What the JSON API does with each kind beyond the registry's description. A kind registers its
hooks here from its own ``kind.py``; kinds without hooks are served generically from their
envelope (``http_api.md``).

Attributes of :class:`ApiHooks`:

- ``record_json``: ``(view, run, subject) -> dict``: the ``record`` route's answer for a kind
  whose frontend view reads a shape of its own (DeepVID's). Default: the generic envelope JSON.
- ``class_map``: ``(record, class index) -> (H, W) map or None``: what the record shows for that
  class, for the ``compare`` route (DeepVID: any class's channel-averaged weights; Grad-CAM: its
  prediction's and the true label's, ``None`` for other classes). Default: the first per-step
  2-d array, as the map of the step summary's ``predicted`` class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from deepvid_plugin.core.hooks import HookTable
from deepvid_plugin.core.record import Record


@dataclasses.dataclass(frozen=True)
class ApiHooks:
    record_json: Callable[[Any, str, str], dict[str, Any]] | None = None
    class_map: Callable[[Record, int], np.ndarray | None] | None = None


_table: HookTable[ApiHooks] = HookTable("API hooks", ApiHooks)


def register(kind: str, hooks: ApiHooks) -> ApiHooks:
    """Set the API hooks of ``kind`` (its ``kind.py`` calls this once, at import)."""
    return _table.register(kind, hooks)


def of(kind: str) -> ApiHooks:
    """The hooks of ``kind`` (the defaults when it registered none)."""
    return _table.get(kind) or ApiHooks()


__all__ = ["ApiHooks", "of", "register"]
