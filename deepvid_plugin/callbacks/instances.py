"""The tracked instances as users have them: a tensor, a numpy array or a map-style dataset
(``torch.utils.data.Subset`` of the test set, whose labels and indices become labels and ids)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepvid_plugin.core import checks


def load_instances(instances: Any) -> tuple[torch.Tensor, list[int] | None, list[str] | None]:
    """``(x, labels found in the data, default ids)`` from a tensor or a map-style dataset."""
    if isinstance(instances, np.ndarray) and instances.dtype.kind == "f":
        instances = torch.from_numpy(instances)
    if isinstance(instances, torch.Tensor):
        x, labels, ids = instances, None, None
    elif not isinstance(instances, (str, bytes, np.ndarray)) and hasattr(instances, "__getitem__") \
            and hasattr(instances, "__len__"):
        n = len(instances)
        if n == 0:
            raise ValueError("instances: expected at least one instance, got an empty dataset")
        items = [instances[i] for i in range(n)]
        xs = [it[0] if isinstance(it, (tuple, list)) else it for it in items]
        if not all(isinstance(t, torch.Tensor) for t in xs):
            raise TypeError("instances: expected a dataset of image tensors or (image, label) "
                            f"tuples, got items of type {type(xs[0]).__name__}")
        if any(t.shape != xs[0].shape for t in xs):
            raise ValueError("instances: expected images of one shape, got "
                             f"{sorted({tuple(t.shape) for t in xs})}")
        x = torch.stack(xs)
        ys = [it[1] for it in items if isinstance(it, (tuple, list)) and len(it) > 1]
        labels = [int(y) for y in ys] if len(ys) == n and all(
            isinstance(y, (int, np.integer)) or (isinstance(y, torch.Tensor) and y.numel() == 1)
            for y in ys) else None
        # torch.utils.data.Subset: name instances by their index in the full dataset.
        indices = getattr(instances, "indices", None)
        ids = [str(int(i)) for i in indices] if indices is not None and len(indices) == n else None
    else:
        raise TypeError("instances: expected a (K, C, H, W) tensor or a dataset (e.g. "
                        f"torch.utils.data.Subset), got {type(instances).__name__}")
    x = checks.images("instances", x)
    return x.to("cpu", torch.float32).clone(), labels, ids


__all__ = ["load_instances"]
