"""Network Dissection under torch.distributed: 2 CPU processes (gloo) shard the probe set, exchange
their top activations and integer tallies, and get exactly the one-process result."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from deepvid_plugin.methods.netdissect import ConceptSet, NetDissect

WORLD = 2


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())


def _dissect() -> tuple[ConceptSet, NetDissect, nn.Module]:
    cs = ConceptSet.synthetic(240, 32, seed=0)
    return cs, NetDissect(cs, ["1", "4"], batch_size=32), _model()


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        _, nd, model = _dissect()
        res = nd.dissect(model)  # distributed is detected
        np.savez(os.path.join(out, f"rank{rank}.npz"),
                 **{f"{r.layer}_{k}": getattr(r, k) for r in res
                    for k in ("iou", "thresholds", "top_images", "mask_fraction")})
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump([[r.units, r.unique_detectors] for r in res], f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_equal_one_process_exactly(tmp_path):
    mp.start_processes(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD,
                       start_method="spawn")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, nd, model = _dissect()
        single = nd.dissect(model, distributed=False)
    finally:
        torch.set_num_threads(threads)
    assert len(single) == 2
    for rank in range(WORLD):
        arrays = np.load(tmp_path / f"rank{rank}.npz")
        with open(tmp_path / f"rank{rank}.json") as f:
            units = json.load(f)
        for r, (u, uniq) in zip(single, units, strict=True):
            for k in ("iou", "thresholds", "top_images", "mask_fraction"):
                assert np.array_equal(arrays[f"{r.layer}_{k}"], getattr(r, k)), (rank, r.layer, k)
            assert u == r.units and uniq == r.unique_detectors
    assert any(u["detector"] for r in single for u in r.units)  # not a comparison of zeros
