"""A deterministic renderer of probe images with exact pixel masks (no download, no Broden).

Each image has, back to front:

- a **scene** (image-level label): one of 16 desaturated two-tone backgrounds with a horizon;
- with probability 0.6 a rectangular **texture** patch in grey levels: oriented stripes
  (horizontal, vertical, diagonal, antidiagonal), checker, dots, and crops of the textures that
  scikit-image bundles (``skimage.data.brick``, ``grass``, ``gravel``). scikit-image is imported
  lazily; when it is not installed those three textures are left out and the set has only the
  procedural ones (its label list is then shorter);
- one or two **objects** (circle, square, triangle, cross, ring, diamond, star, bar), each
  rotated, in one of Broden's 11 **colour** names; the second occludes the first;
- **parts**: each object's visible mask split into its boundary (pixels within ``max(1, S // 32)``
  of the outside) and interior.

Colour labels cover only object pixels, and backgrounds and textures are kept unsaturated, so a
colour unit's top activations land on objects. Everything is vectorised over images (numpy), so
1,000 images at 32x32 take about a second. Sizes are kept small so that every label covers
far less than 12.5% of all pixels (the most a label may cover and still be detectable at a 0.5%
quantile and IoU 0.04); ``ConceptSet.coverage()`` reports them.

``targets`` is the class of the front object (index into ``SHAPES``), for training a classifier
on the same distribution.
"""

from __future__ import annotations

import numpy as np
import torch

from deepvid_plugin.methods.netdissect.concepts import ConceptSet

COLORS = {  # Broden's 11 colour names; vivid values so that the names are unambiguous
    "black": (0.08, 0.08, 0.08), "blue": (0.10, 0.25, 0.90), "brown": (0.50, 0.30, 0.12),
    "green": (0.10, 0.70, 0.15), "grey": (0.50, 0.50, 0.50), "orange": (1.00, 0.55, 0.05),
    "pink": (1.00, 0.60, 0.75), "purple": (0.50, 0.10, 0.60), "red": (0.90, 0.08, 0.08),
    "white": (0.95, 0.95, 0.95), "yellow": (0.95, 0.90, 0.10),
}
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bar")
PROCEDURAL_TEXTURES = ("stripes-horizontal", "stripes-vertical", "stripes-diagonal",
                       "stripes-antidiagonal", "checker", "dots")
SKIMAGE_TEXTURES = ("brick", "grass", "gravel")
SCENES = {  # name: (top colour, bottom colour, horizon as a fraction of the height)
    "sky": ((0.55, 0.70, 0.90), (0.70, 0.80, 0.95), 0.6), "sea": ((0.65, 0.75, 0.90),
                                                                 (0.15, 0.35, 0.60), 0.45),
    "beach": ((0.60, 0.75, 0.90), (0.85, 0.78, 0.55), 0.55), "desert": ((0.85, 0.80, 0.65),
                                                                       (0.80, 0.65, 0.40), 0.35),
    "forest": ((0.25, 0.40, 0.25), (0.20, 0.30, 0.15), 0.5), "field": ((0.65, 0.80, 0.90),
                                                                      (0.45, 0.65, 0.30), 0.4),
    "snowfield": ((0.80, 0.85, 0.90), (0.95, 0.95, 0.97), 0.4), "night": ((0.05, 0.05, 0.15),
                                                                         (0.10, 0.10, 0.12), 0.7),
    "sunset": ((0.85, 0.55, 0.40), (0.35, 0.25, 0.30), 0.5), "cave": ((0.20, 0.18, 0.15),
                                                                     (0.35, 0.30, 0.25), 0.3),
    "kitchen": ((0.90, 0.88, 0.80), (0.60, 0.50, 0.40), 0.65), "street": ((0.60, 0.65, 0.70),
                                                                         (0.35, 0.35, 0.35), 0.5),
    "lake": ((0.40, 0.55, 0.45), (0.30, 0.45, 0.55), 0.5), "mountain": ((0.70, 0.75, 0.85),
                                                                       (0.45, 0.42, 0.40), 0.25),
    "swamp": ((0.40, 0.45, 0.30), (0.30, 0.32, 0.20), 0.55), "volcano": ((0.30, 0.25, 0.25),
                                                                        (0.55, 0.30, 0.20), 0.45),
}
P_TEXTURE = 0.6
P_TWO_OBJECTS = 0.5
DESATURATE = 0.5  # backgrounds: half-way to grey, so no background looks like a colour concept


def available_textures() -> tuple[str, ...]:
    """The texture names the renderer uses here (the scikit-image ones only when it imports)."""
    return PROCEDURAL_TEXTURES + (SKIMAGE_TEXTURES if _skimage_textures() else ())


def _skimage_textures() -> list[np.ndarray] | None:
    try:
        from skimage import data
    except ImportError:  # optional: fall back to the procedural textures (module docstring)
        return None
    return [getattr(data, name)().astype(np.float32) / 255.0 for name in SKIMAGE_TEXTURES]


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """4-neighbour binary erosion of (N, S, S) masks; outside the image counts as background."""
    out = mask
    for _ in range(steps):
        p = np.pad(out, ((0, 0), (1, 1), (1, 1)), constant_values=False)
        out = out & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    return out


def _shape_masks(kind: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray,
                 theta: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(N, S, S) masks of one object per image; all geometry in units of the radius r."""
    dx = (xs[None, None, :] - cx[:, None, None]) / r[:, None, None]
    dy = (xs[None, :, None] - cy[:, None, None]) / r[:, None, None]
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    tri = np.ones_like(u, dtype=bool)
    for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):  # three half-planes of an equilateral triangle
        tri &= np.cos(a) * u + np.sin(a) * v <= 0.68
    masks = {
        "circle": rho <= 1.0,
        "square": np.maximum(abs(u), abs(v)) <= 0.85,
        "triangle": tri,
        "cross": ((abs(u) <= 0.35) & (abs(v) <= 1.05)) | ((abs(v) <= 0.35) & (abs(u) <= 1.05)),
        "ring": (rho >= 0.55) & (rho <= 1.05),
        "diamond": abs(u) + abs(v) <= 1.2,
        "star": rho <= 0.75 + 0.4 * np.cos(5 * phi),
        "bar": (abs(u) <= 1.25) & (abs(v) <= 0.45),
    }
    out = np.zeros(u.shape, dtype=bool)
    for k, name in enumerate(SHAPES):
        sel = kind == k
        out[sel] = masks[name][sel]
    return out


def _textures(kind: np.ndarray, size: int, rng: np.random.Generator, names: tuple[str, ...],
              crops: list[np.ndarray] | None) -> np.ndarray:
    """(N, S, S) grey textures in [0, 1]: pattern kind[i] for image i, random phase and scale."""
    n = len(kind)
    px = np.arange(size, dtype=np.float32) * (32.0 / size)  # patterns look alike at any size
    x, y = px[None, None, :], px[None, :, None]
    period = rng.uniform(4.0, 6.0, n).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 1, n).astype(np.float32)[:, None, None]
    wave = {
        "stripes-horizontal": y, "stripes-vertical": x,
        "stripes-diagonal": (x + y) / np.sqrt(2), "stripes-antidiagonal": (x - y) / np.sqrt(2),
    }
    out = np.zeros((n, size, size), dtype=np.float32)
    for k, name in enumerate(names):
        sel = kind == k
        if not sel.any():
            continue
        p, ph = period[sel], phase[sel]
        if name in wave:
            t = (np.mod(wave[name] / p + ph, 1.0) < 0.5).astype(np.float32)
        elif name == "checker":
            t = ((np.floor(x / p + ph) + np.floor(y / p + ph)) % 2).astype(np.float32)
        elif name == "dots":
            fx, fy = np.mod(x / p + ph, 1.0) - 0.5, np.mod(y / p + ph, 1.0) - 0.5
            t = (fx ** 2 + fy ** 2 < 0.09).astype(np.float32)
        else:  # a crop of a scikit-image texture, sampled every 2 pixels, contrast stretched
            img = crops[SKIMAGE_TEXTURES.index(name)]
            m = int(sel.sum())
            oy = rng.integers(0, img.shape[0] - 2 * size, m)[:, None, None]
            ox = rng.integers(0, img.shape[1] - 2 * size, m)[:, None, None]
            idx = np.arange(size) * 2
            t = img[oy + idx[None, :, None], ox + idx[None, None, :]]
            lo, hi = t.min((1, 2), keepdims=True), t.max((1, 2), keepdims=True)
            t = (t - lo) / np.maximum(hi - lo, 1e-6)
        out[sel] = t
    return out


def render(n: int, size: int, seed: int) -> ConceptSet:
    """``ConceptSet.synthetic``: ``n`` images of ``size`` x ``size``, deterministic in ``seed``."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size: expected an int >= 8, got {size!r}")
    rng = np.random.default_rng(seed)
    crops = _skimage_textures()
    textures = PROCEDURAL_TEXTURES + (SKIMAGE_TEXTURES if crops is not None else ())
    colors, scenes = list(COLORS), list(SCENES)
    # label ids (1-based, Broden style), grouped by category in Broden's order
    labels = [*colors, *SHAPES, *(f"{s}-{p}" for s in SHAPES for p in ("boundary", "interior")),
              *scenes, *textures]
    cats = (["color"] * len(colors) + ["object"] * len(SHAPES) + ["part"] * 2 * len(SHAPES)
            + ["scene"] * len(scenes) + ["texture"] * len(textures))
    lid = {name: i + 1 for i, name in enumerate(labels)}
    xs = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in [0, 1]

    # scene background: two tones split at a jittered horizon, desaturated
    scene = rng.integers(0, len(scenes), n)
    top = np.array([SCENES[s][0] for s in scenes], np.float32)[scene]
    bottom = np.array([SCENES[s][1] for s in scenes], np.float32)[scene]
    horizon = np.array([SCENES[s][2] for s in scenes], np.float32)[scene] + rng.uniform(-.1, .1, n)
    below = (xs[None, :] > horizon[:, None]).astype(np.float32)  # (N, S) rows
    bg = top[:, :, None] * (1 - below[:, None, :]) + bottom[:, :, None] * below[:, None, :]
    bg = bg[..., None] * np.ones(size, np.float32)  # (N, 3, S, S)
    bg = DESATURATE * bg.mean(1, keepdims=True) + (1 - DESATURATE) * bg
    img = bg

    # texture patch: a rectangle of 35-55% of each side
    has_tex = rng.uniform(size=n) < P_TEXTURE
    tex_kind = rng.integers(0, len(textures), n)
    w, h = rng.uniform(0.35, 0.55, (2, n))
    x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    patch = ((xs[None, None, :] >= x0[:, None, None]) & (xs[None, None, :] < (x0 + w)[:, None, None])
             & (xs[None, :, None] >= y0[:, None, None]) & (xs[None, :, None] < (y0 + h)[:, None, None])
             & has_tex[:, None, None])
    lo, hi = rng.uniform(0.15, 0.35, n), rng.uniform(0.65, 0.85, n)
    tex = _textures(tex_kind, size, rng, textures, crops)
    tex = lo[:, None, None] + (hi - lo)[:, None, None] * tex
    img = np.where(patch[:, None], tex[:, None], img)

    # objects, back to front; the second (when present) occludes the first
    n_obj = 1 + (rng.uniform(size=n) < P_TWO_OBJECTS)
    obj_map = np.zeros((n, size, size), np.int32)
    col_map = np.zeros((n, size, size), np.int32)
    obj_masks = []
    front = np.zeros(n, np.int64)
    palette = np.array(list(COLORS.values()), np.float32)
    for slot in range(2):
        present = n_obj > slot
        kind = rng.integers(0, len(SHAPES), n)
        color = rng.integers(0, len(colors), n)
        r = rng.uniform(0.12, 0.19, n)
        cx, cy = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
        mask = _shape_masks(kind, cx, cy, r, rng.uniform(0, 2 * np.pi, n), xs) & present[:, None, None]
        rgb = np.clip(palette[color] + rng.uniform(-0.05, 0.05, (n, 3)), 0, 1).astype(np.float32)
        img = np.where(mask[:, None], rgb[:, :, None, None], img)
        obj_map = np.where(mask, np.array([lid[s] for s in SHAPES])[kind][:, None, None], obj_map)
        col_map = np.where(mask, np.array([lid[c] for c in colors])[color][:, None, None], col_map)
        obj_masks = [(m & ~mask, k) for m, k in obj_masks] + [(mask, kind)]
        front = np.where(present, kind, front)
    part_map = np.zeros((n, size, size), np.int32)
    step = max(1, size // 32)
    for mask, kind in obj_masks:
        inner = _erode(mask, step)
        base = np.array([lid[f"{s}-boundary"] for s in SHAPES])[kind][:, None, None]
        part_map = np.where(mask & ~inner, base, part_map)
        part_map = np.where(inner, base + 1, part_map)  # "-interior" follows "-boundary"
    tex_map = np.where(patch & (obj_map == 0),
                       np.array([lid[t] for t in textures])[tex_kind][:, None, None], 0)

    img = img + rng.normal(0, 0.02, img.shape).astype(np.float32)
    # 8-bit values, so that writing PNGs and reading them back is exact
    img8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return ConceptSet(
        images=torch.from_numpy(img8).float() / 255,
        labels=tuple(labels), label_category=tuple(cats),
        categories=("color", "object", "part", "scene", "texture"),
        pixel_labels={"color": col_map[:, None].astype(np.int32),
                      "object": obj_map[:, None].astype(np.int32),
                      "part": part_map[:, None].astype(np.int32),
                      "texture": tex_map[:, None].astype(np.int32)},
        image_labels={"scene": (scene + lid[scenes[0]]).astype(np.int32)[:, None]},
        targets=front.astype(np.int64), target_names=SHAPES,
        source=f"synthetic(n={n}, size={size}, seed={seed})")
