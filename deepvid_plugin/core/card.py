"""The step card: one picture per subject and step, readable in MLflow's image card.

MLflow's chart view shows a logged image as a 256-pixel-wide thumbnail, centred vertically in a
256 x 256 box under the run's name and parameters, and cuts what falls below the card (measured
with MLflow 3.17 in Chromium: a 3:2 picture lost its bottom third under five lines of
parameters). So a card is **2:1** (512 x 256, its thumbnail 256 x 128, the middle of the box)
and its text is **at least 24 px**, i.e. 12 px in the thumbnail: the subject, the true label,
the prediction and the trust verdict on the left, two maps on the right, each with its caption
and colour key. Kinds draw their cards with these helpers (DeepVID's, Exp-KD's), so every card
reads the same way.

PIL is imported when a card is drawn, never at import (TensorBoard's plugin loads the kinds).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepvid_plugin.core import render

#: the card's size: 2:1, so the thumbnail (256 wide) sits inside MLflow's square box.
WIDTH, HEIGHT = 512, 256
#: the smallest text on a card: 12 px in MLflow's 256-px thumbnail.
TEXT_PX = 24
PAD = 10
#: the text column's width; the maps take the rest.
TEXT_W = 210
INK, MUTED = (17, 24, 39), (75, 85, 99)
GOOD, BAD, WARN = (21, 128, 61), (185, 28, 28), (180, 83, 9)
_FONTS = ("DejaVuSansCondensed{}.ttf", "DejaVuSans{}.ttf")
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF",
              "/usr/share/fonts/dejavu", "/Library/Fonts")


@functools.lru_cache(maxsize=16)
def font(size: int = TEXT_PX, bold: bool = False) -> Any:
    """A condensed sans-serif at ``size`` px (DejaVu where installed, else PIL's own)."""
    from PIL import ImageFont

    for name in _FONTS:
        for folder in _FONT_DIRS:
            path = os.path.join(folder, name.format("-Bold" if bold else ""))
            if os.path.exists(path):
                return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def fit(draw: Any, text: str, width: int, size: int = TEXT_PX, bold: bool = False) -> str:
    """``text`` cut with an ellipsis to fit ``width`` px."""
    f = font(size, bold)
    if draw.textlength(text, font=f) <= width:
        return text
    while text and draw.textlength(text + "…", font=f) > width:
        text = text[:-1]
    return text.rstrip() + "…"


@dataclasses.dataclass(frozen=True)
class Line:
    """One line of the card's text column."""

    text: str
    color: tuple[int, int, int] = INK
    bold: bool = False


@dataclasses.dataclass(frozen=True)
class Panel:
    """One map on the card: RGB floats (``render.overlay``), its caption, and the words at the
    ends of its colour key (``("−", "+")`` for signed maps, ``("0", "max")`` for maps that are
    never negative)."""

    rgb: np.ndarray
    caption: str
    key: tuple[str, str] = ("−", "+")
    signed: bool = True


def draw(lines: Sequence[Line], panels: Sequence[Panel]) -> np.ndarray:
    """The card as an ``(HEIGHT, WIDTH, 3)`` uint8 image."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    pen = ImageDraw.Draw(canvas)
    step = (HEIGHT - 2 * PAD) // max(5, len(lines))
    for i, line in enumerate(lines):
        pen.text((PAD, PAD + i * step), fit(pen, line.text, TEXT_W, bold=line.bold),
                 fill=line.color, font=font(TEXT_PX, line.bold))
    if panels:
        slot = (WIDTH - TEXT_W - 2 * PAD) // len(panels)
        side = min(slot - PAD, HEIGHT - 3 * TEXT_PX - 4 * PAD)
        for i, p in enumerate(panels):
            x0 = TEXT_W + PAD + i * slot + (slot - side) // 2
            _panel(canvas, pen, p, x0, side)
    return np.asarray(canvas, dtype=np.uint8)


def _panel(canvas: Any, pen: Any, p: Panel, x0: int, side: int) -> None:
    from PIL import Image

    pen.text((x0, PAD - 2), fit(pen, p.caption, side), fill=INK, font=font())
    y0 = PAD + TEXT_PX + 6
    h, w = p.rgb.shape[:2]
    # nearest neighbour: a pixel of an 8x8 map stays a square (the demo's 2x2 marker too)
    img = Image.fromarray(np.rint(np.clip(p.rgb, 0, 255)).astype(np.uint8))
    img = img.resize((side, max(1, round(side * h / w))), Image.NEAREST if max(h, w) <= side
                     else Image.BOX)
    canvas.paste(img, (x0, y0))
    pen.rectangle([x0 - 1, y0 - 1, x0 + img.width, y0 + img.height], outline=(209, 213, 219))
    y = y0 + img.height + 6
    t = np.linspace(-1.0 if p.signed else 0.0, 1.0, side)
    bar = render.diverging(t)[None].repeat(8, axis=0)
    canvas.paste(Image.fromarray(np.rint(bar).astype(np.uint8)), (x0, y))
    y += 10
    lo, hi = p.key
    pen.text((x0, y), lo, fill=(33, 102, 172) if p.signed else MUTED, font=font())
    pen.text((x0 + side - pen.textlength(hi, font=font()), y), hi, fill=(178, 24, 43),
             font=font())


def trust_lines(trustworthy: bool | None, reason: str | None, auc: str | None) -> list[Line]:
    """The verdict in two short lines: "✓ trusted" and the deletion AUC against random, or
    "⚠ LOW TRUST" and a few words of why."""
    if trustworthy is None:
        return [Line("no trust evidence", MUTED)]
    if trustworthy:
        return [Line("✓ trusted", GOOD, bold=True)] + ([Line(auc, MUTED)] if auc else [])
    return [Line("⚠ LOW TRUST", WARN, bold=True), Line(short_reason(reason), WARN)]


def short_reason(reason: str | None) -> str:
    """A few words of a trust reason (the full sentence is in the DeepVID views)."""
    text = (reason or "").lower()
    if "random" in text:
        return "map ≈ random map"
    if "student" in text or "agree" in text or "fidelity" in text:
        return "student ≠ model"
    return "see DeepVID view"


def deletion_line(evidence: dict[str, Any]) -> str | None:
    """"del .05 < rnd .26": the map's deletion AUC against a random map's (lower is
    better), or ``None`` without evidence."""
    d, r = evidence.get("deletion_auc"), evidence.get("random_deletion_auc")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (d, r)):
        return None
    def short(v: float) -> str:
        return f"{v:.2f}".replace("0.", ".", 1) if 0 <= v < 1 else f"{v:.2f}"

    return f"del {short(d)} {'<' if d < r else '≥'} rnd {short(r)}"


def label_lines(subject: str, names: Sequence[str], label: int | None, pred: int,
                prob: float | None, who: str = "pred") -> list[Line]:
    """The subject, its true label and the prediction (green when right, red when wrong)."""
    def name(k: int | None) -> str:
        return "?" if k is None else (str(names[k]) if 0 <= k < len(names) else str(k))

    right = label is not None and pred == label
    return [Line(subject, bold=True),
            Line(f"true {name(label)}", MUTED),
            Line(f"{who} {name(pred)}" + ("" if prob is None else f" · {prob:.0%}"),
                 GOOD if right else BAD if label is not None else INK, bold=True)]


__all__ = ["HEIGHT", "TEXT_PX", "WIDTH", "Line", "Panel", "deletion_line", "draw", "fit", "font",
           "label_lines", "short_reason", "trust_lines"]
