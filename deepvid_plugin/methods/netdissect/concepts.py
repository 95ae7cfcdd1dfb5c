"""A probe set for Network Dissection: images plus exact concept labels.

The layout follows Broden (Bau et al., CVPR 2017): every concept (label) belongs to one primary
*category* (color, object, part, material, scene, texture). A category's labels are stored either
per pixel (label maps, possibly several layers per image when labels overlap) or per image
(image-level labels such as scenes, which count as covering the whole image). Label ids inside a
``ConceptSet`` are 1-based with 0 meaning "no label", exactly like Broden's label numbers, so a
Broden label number is its id here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

#: Broden's category names, in the order of ``index.csv``'s columns (one column per category).
BRODEN_CATEGORIES = ("color", "object", "material", "part", "scene", "texture")


@dataclasses.dataclass(frozen=True, eq=False)
class ConceptSet:
    """Probe images with concept labels (build one with :meth:`synthetic` or :meth:`broden`).

    Attributes:
        images: ``(N, 3, S, S)`` float32 RGB in [0, 1] (8-bit values, so PNG round trips are exact).
        labels: concept names; ``labels[i - 1]`` is the name of label id ``i`` (ids are 1-based).
        label_category: the primary category of each label, aligned with ``labels``.
        categories: the categories in use, in Broden's order.
        pixel_labels: category -> ``(N, K, S, S)`` int32 label ids (0 = none), K overlapping layers.
        image_labels: category -> ``(N, K)`` int32 label ids (0 = none), image-level labels.
        targets: optional ``(N,)`` int64 class per image (the synthetic set's foreground shape),
            for training a model on the same distribution; ``None`` when unknown.
        target_names: names of the ``targets`` classes.
        source: where the set came from, for reports.

    Example::

        >>> from deepvid_plugin.explain import ConceptSet
        >>> probe = ConceptSet.synthetic(n=20, size=16, seed=0)
        >>> len(probe), probe.images.shape[1:]
        (20, torch.Size([3, 16, 16]))
    """

    images: torch.Tensor
    labels: tuple[str, ...]
    label_category: tuple[str, ...]
    categories: tuple[str, ...]
    pixel_labels: dict[str, np.ndarray]
    image_labels: dict[str, np.ndarray]
    targets: np.ndarray | None = None
    target_names: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        x = self.images
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3
                and x.shape[2] == x.shape[3] and x.dtype == torch.float32):
            raise ValueError("images: expected a float32 tensor (N, 3, S, S), got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        if len(self.labels) != len(self.label_category):
            raise ValueError(f"label_category: expected {len(self.labels)} entries (one per label), "
                             f"got {len(self.label_category)}")
        unknown = sorted(set(self.label_category) - set(self.categories))
        if unknown:
            raise ValueError(f"label_category: expected categories from {list(self.categories)}, "
                             f"got {unknown}")
        n, s = len(self), self.size
        for cat, arr in self.pixel_labels.items():
            if arr.ndim != 4 or arr.shape[0] != n or arr.shape[2:] != (s, s):
                raise ValueError(f"pixel_labels[{cat!r}]: expected shape ({n}, K, {s}, {s}), got "
                                 f"{arr.shape}")
        for cat, arr in self.image_labels.items():
            if arr.ndim != 2 or arr.shape[0] != n:
                raise ValueError(f"image_labels[{cat!r}]: expected shape ({n}, K), got {arr.shape}")
        for cat, arr in (*self.pixel_labels.items(), *self.image_labels.items()):
            if cat not in self.categories:
                raise ValueError(f"category {cat!r}: expected one of {list(self.categories)}")
            if arr.size and (arr.min() < 0 or arr.max() > len(self.labels)):
                raise ValueError(f"labels of {cat!r}: expected ids in [0, {len(self.labels)}], got "
                                 f"[{arr.min()}, {arr.max()}]")

    # ---- constructors ----------------------------------------------------------------------
    @classmethod
    def synthetic(cls, n: int = 1000, size: int = 32, seed: int = 0) -> ConceptSet:
        """Rendered shapes, colours, textures and scenes with exact masks (see ``synthetic.py``)."""
        from deepvid_plugin.methods.netdissect.synthetic import render

        return render(n, size, seed)

    @classmethod
    def broden(cls, path: str | Path, size: int, limit: int | None = None,
               split: str | None = None) -> ConceptSet:
        """Read a Broden-format directory (see ``broden.py``); nothing is downloaded."""
        from deepvid_plugin.methods.netdissect.broden import read_broden

        return read_broden(path, size, limit=limit, split=split)

    def write_broden(self, path: str | Path) -> Path:
        """Write this set in Broden's on-disk format (PNG images and label maps)."""
        from deepvid_plugin.methods.netdissect.broden import write_broden

        return write_broden(self, path)

    def subset(self, indices) -> ConceptSet:
        """The images ``indices`` (and their labels), e.g. a few hundred images of Broden."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size == 0 or idx.min() < -len(self) or idx.max() >= len(self):
            raise ValueError(f"indices: expected a non-empty selection of [0, {len(self)}), got "
                             f"{idx.size} indices")
        return dataclasses.replace(
            self, images=self.images[torch.from_numpy(idx)],
            pixel_labels={c: a[idx] for c, a in self.pixel_labels.items()},
            image_labels={c: a[idx] for c, a in self.image_labels.items()},
            targets=None if self.targets is None else self.targets[idx],
            source=f"{self.source}[{idx.size} images]")

    # ---- views -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"ConceptSet({self.source or 'custom'}: {len(self)} images of {self.size}x"
                f"{self.size}, {len(self.labels)} labels in {list(self.categories)})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        """Image and label resolution (square)."""
        return int(self.images.shape[-1])

    def label_id(self, name: str) -> int:
        """The 1-based id of a label name (ValueError listing close names when unknown)."""
        try:
            return self.labels.index(name) + 1
        except ValueError:
            import difflib

            close = difflib.get_close_matches(name, self.labels, n=5)
            raise ValueError(f"name: expected a label of this ConceptSet (close: {close}), got "
                             f"{name!r}") from None

    def category_of(self) -> np.ndarray:
        """``(C + 1,)`` int: index into :attr:`categories` of each label id (-1 for id 0)."""
        out = np.full(len(self.labels) + 1, -1, dtype=np.int64)
        out[1:] = [self.categories.index(c) for c in self.label_category]
        return out

    def label_pixels(self) -> np.ndarray:
        """``(C,)`` int64 pixel count of each label over the whole set (image labels count S*S)."""
        counts = np.zeros(len(self.labels) + 1, dtype=np.int64)
        for arr in self.pixel_labels.values():
            counts += np.bincount(arr.ravel(), minlength=len(counts))
        for arr in self.image_labels.values():
            counts += np.bincount(arr.ravel(), minlength=len(counts)) * self.size ** 2
        return counts[1:]

    def coverage(self) -> dict[str, float]:
        """Fraction of all probe pixels each label covers. At a top quantile q a unit's mask holds
        about q of all pixels, so its IoU with label c is at most q / coverage(c): a label above
        q / 0.04 (12.5% at q = 0.005) can never reach the default detector threshold."""
        total = len(self) * self.size ** 2
        return {name: float(c) / total for name, c in zip(self.labels, self.label_pixels(),
                                                         strict=True)}

    def has_category(self) -> np.ndarray:
        """``(N, n_categories)`` bool: the image carries at least one label of the category (the
        original NetDissect gate: IoU for a label counts only over such images)."""
        n, cat_of = len(self), self.category_of()
        present = np.zeros((n, len(self.labels) + 1), dtype=bool)
        rows = np.arange(n)[:, None]
        for arr in (*self.pixel_labels.values(), *self.image_labels.values()):
            present[rows, arr.reshape(n, -1)] = True
        present[:, 0] = False
        out = np.zeros((n, len(self.categories)), dtype=bool)
        for k in range(len(self.categories)):
            out[:, k] = present[:, cat_of == k].any(1)
        return out
