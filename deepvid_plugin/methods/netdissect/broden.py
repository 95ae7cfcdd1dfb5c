"""Broden's on-disk format (Bau et al., CVPR 2017), read and written without any download.

A Broden directory holds:

- ``index.csv`` with columns ``image, split, ih, iw, sh, sw, color, object, material, part, scene,
  texture``. ``image`` is a path under ``images/``; each category cell holds ``;``-separated
  entries, each either a PNG name under ``images/`` (a pixel label map) or an integer (an
  image-level label, covering the whole image). An empty cell means the image has no label of
  that category.
- PNG label maps decoded as ``R + 256 * G`` (0 = no label).
- ``label.csv`` (``number, name, category, frequency, coverage, syns``); ``category`` reads like
  ``color(1163);object(2)``.
- ``category.csv`` (``name, first, last, count, frequency``) and one ``c_<category>.csv``
  (``code, number, name, frequency, coverage``) per category, listing its labels.

A label's primary category (the one its IoU is gated by) is, as in NetDissect-Lite, the category
whose ``c_<category>.csv`` gives it the largest coverage; for a label no ``c_`` file lists, the
category with the largest count in ``label.csv``.

Images are resized to ``size`` x ``size`` (bilinear) and label maps to the same grid (nearest),
so the label resolution equals the probe resolution; files already at that size are left as they
are (the synthetic set's round trip is exact). PNG I/O uses Pillow, which ships with matplotlib
and torchvision.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import torch

from deepvid_plugin.methods.netdissect.concepts import BRODEN_CATEGORIES, ConceptSet

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw", *BRODEN_CATEGORIES)
_CAT_COUNT = re.compile(r"^\s*([^()]+?)\s*(?:\((\d+)\))?\s*$")


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # Pillow comes with matplotlib/torchvision; say how to get it
        raise ImportError("reading/writing Broden PNGs needs Pillow: pip install pillow") from e
    return Image


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"path: expected a Broden directory containing {path.name}, "
                                f"missing {path}")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _primary_category(cell: str, where: str) -> str:
    """``color(1163);object(2)`` -> the category with the largest count (first on ties)."""
    best, best_n = "", -1
    for part in filter(None, (p.strip() for p in cell.split(";"))):
        m = _CAT_COUNT.match(part)
        if not m:
            raise ValueError(f"{where}: expected entries like 'color(12)', got {part!r}")
        n = int(m.group(2) or 0)
        if n > best_n:
            best, best_n = m.group(1), n
    return best


def _label_table(root: Path) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(labels by number - 1, primary category of each, categories in use)."""
    rows = _read_csv(root / "label.csv")
    cat_rows = _read_csv(root / "category.csv")
    categories = [r["name"] for r in cat_rows]
    # c_<category>.csv lists each category's labels with their coverage in it. As in
    # NetDissect-Lite, a label listed by several categories belongs to the one where it covers
    # most (the first in category.csv on ties); labels no c_ file lists fall back to label.csv.
    member: dict[int, tuple[float, str]] = {}
    for cat in categories:
        for r in _read_csv(root / f"c_{cat}.csv"):
            num, cov = int(r["number"]), float(r.get("coverage") or 0.0)
            if num not in member or cov > member[num][0]:
                member[num] = (cov, cat)
    numbers = [int(r["number"]) for r in rows if int(r["number"]) > 0]  # 0 is "-" when listed
    top = max(numbers, default=0)
    names, cats = [""] * top, [""] * top
    for r in rows:
        num = int(r["number"])
        if num <= 0:
            continue
        names[num - 1] = r["name"]
        cats[num - 1] = (member[num][1] if num in member else
                         _primary_category(r.get("category") or "", f"label.csv number {num}"))
    missing = [i + 1 for i, c in enumerate(cats) if not c]
    if missing:
        raise ValueError(f"label.csv: expected a category for every label number 1..{top}, none "
                         f"for {missing[:10]}")
    unknown = sorted(set(cats) - set(categories))
    if unknown:
        raise ValueError(f"category.csv: expected it to list every label's category, missing "
                         f"{unknown}")
    order = [c for c in BRODEN_CATEGORIES if c in categories] + [
        c for c in categories if c not in BRODEN_CATEGORIES]
    return tuple(names), tuple(cats), tuple(order)


def read_broden(path: str | Path, size: int, limit: int | None = None,
                split: str | None = None) -> ConceptSet:
    """``ConceptSet.broden``: the images of ``index.csv`` (optionally one ``split``, at most
    ``limit`` of them, in file order) at ``size`` x ``size``."""
    Image = _pil()
    root = Path(path)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size: expected a positive int, got {size!r}")
    labels, label_cat, categories = _label_table(root)
    rows = _read_csv(root / "index.csv")
    if rows and not set(INDEX_COLUMNS) <= rows[0].keys():
        raise ValueError(f"index.csv: expected columns {list(INDEX_COLUMNS)}, got "
                         f"{list(rows[0].keys())}")
    if split is not None:
        rows = [r for r in rows if r["split"] == split]
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        raise ValueError(f"index.csv: expected at least one image (split={split!r}, "
                         f"limit={limit!r}), got none")
    images = np.zeros((len(rows), size, size, 3), np.uint8)
    pixel: dict[str, list[list[np.ndarray]]] = {}
    image: dict[str, list[list[int]]] = {}
    for i, r in enumerate(rows):
        im = Image.open(root / "images" / r["image"]).convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        images[i] = np.asarray(im)
        for cat in BRODEN_CATEGORIES:
            for entry in filter(None, (e.strip() for e in (r.get(cat) or "").split(";"))):
                if entry.isdigit():
                    image.setdefault(cat, [[] for _ in rows])[i].append(int(entry))
                else:
                    pixel.setdefault(cat, [[] for _ in rows])[i].append(
                        _read_label_png(Image, root / "images" / entry, size))
    return ConceptSet(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float() / 255,
        labels=labels, label_category=label_cat, categories=categories,
        pixel_labels={c: _stack_maps(v, size) for c, v in pixel.items()},
        image_labels={c: _stack_ids(v) for c, v in image.items()},
        source=f"broden({str(root)!r}, size={size}, split={split!r}, n={len(rows)})")


def _read_label_png(Image, path: Path, size: int) -> np.ndarray:
    arr = np.asarray(Image.open(path).convert("RGB")).astype(np.int32)
    lab = arr[..., 0] + 256 * arr[..., 1]
    if lab.shape != (size, size):
        pil = Image.fromarray(lab.astype(np.int32)).resize((size, size), Image.NEAREST)
        lab = np.asarray(pil).astype(np.int32)
    return lab


def _stack_maps(per_image: list[list[np.ndarray]], size: int) -> np.ndarray:
    k = max(1, max(len(v) for v in per_image))
    out = np.zeros((len(per_image), k, size, size), np.int32)
    for i, maps in enumerate(per_image):
        for j, m in enumerate(maps):
            out[i, j] = m
    return out


def _stack_ids(per_image: list[list[int]]) -> np.ndarray:
    k = max(1, max(len(v) for v in per_image))
    out = np.zeros((len(per_image), k), np.int32)
    for i, ids in enumerate(per_image):
        out[i, :len(ids)] = ids
    return out


# ---- writing -------------------------------------------------------------------------------
def write_broden(cs: ConceptSet, path: str | Path) -> Path:
    """Write ``cs`` as a Broden directory: PNG images (lossless, unlike Broden's JPEGs, so the
    round trip is exact), one PNG per label layer, integers for image-level labels, and the label,
    category and ``c_<category>.csv`` tables."""
    Image = _pil()
    root = Path(path)
    (root / "images" / "synthetic").mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(cs.categories) - set(BRODEN_CATEGORIES))
    if unknown:
        raise ValueError(f"cs.categories: expected Broden categories {list(BRODEN_CATEGORIES)}, "
                         f"got {unknown}")
    n, s = len(cs), cs.size
    imgs = (cs.images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    index_rows = []
    for i in range(n):
        stem = f"synthetic/{i:06d}"
        Image.fromarray(imgs[i]).save(root / "images" / f"{stem}.png")
        row = {"image": f"{stem}.png", "split": "train", "ih": s, "iw": s, "sh": s, "sw": s}
        for cat in BRODEN_CATEGORIES:
            entries = []
            for j, lab in enumerate(cs.pixel_labels[cat][i] if cat in cs.pixel_labels else ()):
                if not lab.any():
                    continue
                name = f"{stem}_{cat}_{j}.png"
                rgb = np.stack([lab % 256, lab // 256, np.zeros_like(lab)], -1).astype(np.uint8)
                Image.fromarray(rgb).save(root / "images" / name)
                entries.append(name)
            if cat in cs.image_labels:
                entries += [str(int(v)) for v in cs.image_labels[cat][i] if v > 0]
            row[cat] = ";".join(entries)
        index_rows.append(row)
    _write_csv(root / "index.csv", INDEX_COLUMNS, index_rows)

    pixels = cs.label_pixels()
    freq = _label_image_counts(cs)
    label_rows = [{"number": k + 1, "name": name, "category": f"{cat}({freq[k]})",
                   "frequency": int(freq[k]), "coverage": f"{pixels[k] / (n * s * s):.6f}",
                   "syns": ""}
                  for k, (name, cat) in enumerate(zip(cs.labels, cs.label_category, strict=True))]
    _write_csv(root / "label.csv", ("number", "name", "category", "frequency", "coverage", "syns"),
               label_rows)
    cat_rows = []
    for cat in cs.categories:
        members = [r for r, c in zip(label_rows, cs.label_category, strict=True) if c == cat]
        _write_csv(root / f"c_{cat}.csv", ("code", "number", "name", "frequency", "coverage"),
                   [{"code": j + 1, **{k: r[k] for k in ("number", "name", "frequency",
                                                         "coverage")}}
                    for j, r in enumerate(members)])
        cat_rows.append({"name": cat, "first": members[0]["number"] if members else 0,
                         "last": members[-1]["number"] if members else 0, "count": len(members),
                         "frequency": sum(int(r["frequency"]) for r in members)})
    _write_csv(root / "category.csv", ("name", "first", "last", "count", "frequency"), cat_rows)
    return root


def _label_image_counts(cs: ConceptSet) -> np.ndarray:
    """How many images carry each label (Broden's ``frequency``)."""
    n = len(cs)
    present = np.zeros((n, len(cs.labels) + 1), bool)
    for arr in (*cs.pixel_labels.values(), *cs.image_labels.values()):
        present[np.arange(n)[:, None], arr.reshape(n, -1)] = True
    return present[:, 1:].sum(0)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)
