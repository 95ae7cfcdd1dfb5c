"""How many images go through the model at once: ``batch_size``, capped by their size.

A fixed image count is right for small images and wrong for large ones: 512 digits are 128 KB, 512
images of 3 x 224 x 224 are 308 MB of input alone, and a ResNet's activations on them many GB.
Every chunked teacher pass (DeepVID's neighbours, the faithfulness evidence) therefore takes at
most :data:`ELEMENT_BUDGET` input values per chunk: 27 images at 3 x 224 x 224, the full 512 at
64 x 64 and below, so small images run exactly as before. Results never depend on the chunking
(the model runs in eval mode), only memory does.
"""

from __future__ import annotations

#: input values (floats) per chunk: 16 MB of float32 input.
ELEMENT_BUDGET = 1 << 22


def rows_per_chunk(batch_size: int, image_numel: int) -> int:
    """Images per chunk for images of ``image_numel`` values each: at most ``batch_size``."""
    return max(1, min(int(batch_size), ELEMENT_BUDGET // max(1, int(image_numel))))


__all__ = ["ELEMENT_BUDGET", "rows_per_chunk"]
