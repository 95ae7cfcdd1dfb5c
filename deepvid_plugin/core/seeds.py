"""Seeds per instance: every seeded draw about one instance (DeepVID's neighbours, the random map
of the faithfulness evidence) comes from its own stream, so an instance gets the same draw
however many other instances are explained with it and in whatever order."""

from __future__ import annotations

import zlib


def instance_seed(seed: int, instance_id: str) -> int:
    """A stable 63-bit seed for one instance (crc32 is stable across processes, unlike hash())."""
    return (int(seed) * 1_000_003 + zlib.crc32(instance_id.encode("utf-8"))) % (2 ** 63)


__all__ = ["instance_seed"]
