"""DeepVID's step image: what MLflow's image slider shows for a ``deepvid`` record."""

from __future__ import annotations

import numpy as np

from deepvid_plugin.core import render
from deepvid_plugin.methods.deepvid.record import ExplanationRecord

#: smallest side, in pixels, of the step images (28x28 -> 224x224).
MIN_IMAGE_SIDE = 224


def render_weight_map(record: ExplanationRecord, min_side: int = MIN_IMAGE_SIDE) -> np.ndarray:
    """The predicted class's maps as one RGB ``uint8`` image for ``log_image``.

    MLflow's image slider shows this image alone, so it carries everything needed to read it: for
    a pixel student two panels, the **weight** map (channel-averaged) and the **contribution**
    ``weight x input`` (summed over channels: what each pixel of this instance adds to the class
    score); for a region student one panel, each **region's weight** (what switching the region
    on adds to the class score) drawn onto its pixels, with the regions' outlines. Each is drawn
    over the instance in grey (opacity grows with |value|, as in the TensorBoard tab), with a
    colour bar from ``-max|value|`` (blue, against the class) through 0 (white) to ``+max|value|``
    (red, for it), under a header naming the predicted class and, when the record carries them,
    its trust and deletion/insertion evidence. Small images are upscaled by an integer factor
    (nearest neighbour) so they stay crisp.
    """
    from PIL import Image, ImageDraw, ImageFont

    k = record.predicted
    image = np.asarray(record.image, dtype=np.float64)
    grey = render.grey(image)
    if record.regions:
        rgb, scale = render.overlay(record.weight_map(k), grey)
        edges = _edges(np.asarray(record.segments))
        rgb[edges] = 0.55 * rgb[edges] + 0.45 * 255.0  # faint outlines: where the regions are
        panels = [("region weight (what switching the region on adds)", rgb, scale)]
    else:
        panels = [("weight", *render.overlay(record.weight_map(k), grey)),
                  ("contribution = weight x input", *render.overlay(record.contribution_map(k),
                                                                    grey))]
    h, w = grey.shape
    factor = render.upscale_factor(h, w, min_side)
    ph, pw = h * factor, w * factor
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    head = 36
    width = max(render.PAD + len(panels) * (pw + render.PAD), 420)
    height = head + 16 + ph + 6 + render.BAR + 16 + render.PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    name = record.class_names[k] if k < len(record.class_names) else str(k)
    fid = record.fidelity
    trust = "trustworthy" if record.trustworthy else "LOW TRUST"
    reason = fid.get("trust_reason") if not record.trustworthy else None
    draw.text((render.PAD, 4), f"predicted {name!r} (p={float(record.teacher_probs[k]):.2f}) - {trust}",
              fill=(17, 24, 39) if record.trustworthy else (180, 83, 9), font=font)
    line2 = (f"deletion AUC {fid['deletion_auc']:.3f} (random {fid['random_deletion_auc']:.3f}), "
             f"insertion {fid['insertion_auc']:.3f} (random {fid['random_insertion_auc']:.3f})"
             if all(isinstance(fid.get(key), (int, float)) for key in (
                 "deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc"))
             else "no faithfulness evidence (recorded by an older version)")
    if isinstance(reason, str) and reason:
        line2 = reason
    draw.text((render.PAD, 20), line2, fill=(107, 114, 128), font=small)
    bar = render.diverging(np.linspace(-1.0, 1.0, pw))[None].repeat(render.BAR, axis=0)
    for i, (title, rgb, scale) in enumerate(panels):
        x0 = render.PAD + i * (pw + render.PAD)
        draw.text((x0, head), title, fill=(17, 24, 39), font=small)
        big = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
        canvas.paste(Image.fromarray(np.rint(big).astype(np.uint8)), (x0, head + 16))
        y = head + 16 + ph + 6
        canvas.paste(Image.fromarray(np.rint(bar).astype(np.uint8)), (x0, y))
        draw.rectangle([x0, y, x0 + pw - 1, y + render.BAR - 1], outline=(209, 213, 219))
        draw.text((x0, y + render.BAR + 2), f"-{scale:.3g} against", fill=(33, 102, 172), font=small)
        right = f"for +{scale:.3g}"
        draw.text((x0 + pw - draw.textlength(right, font=small), y + render.BAR + 2), right,
                  fill=(178, 24, 43), font=small)
        draw.text((x0 + pw // 2 - 3, y + render.BAR + 2), "0", fill=(107, 114, 128), font=small)
    return np.asarray(canvas, dtype=np.uint8)


def _edges(segments: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour is in another region."""
    out = np.zeros(segments.shape, dtype=bool)
    out[:, :-1] |= segments[:, :-1] != segments[:, 1:]
    out[:-1, :] |= segments[:-1, :] != segments[1:, :]
    return out
