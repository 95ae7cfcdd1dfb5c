"""DeepVID at 224 px in fresh processes: peak memory beyond the model, and time against a bare
teacher forward over the same number of images.

Each run is its own Python process (``python -m benchmarks._memory DIR K``) that loads the
ResNet-18 and the instances, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
explains K instances with ``DeepVID(None)`` (the defaults) and reads the peak back (``VmHWM``):
"beyond the model" is that peak minus the resident memory just before, with the model, its inputs
and torch already loaded (it includes a warm-up call's lazy imports: conservative). Time: the
1-instance run explains its instance twice, as the first and a later epoch (the neighbourhood is
cached then, as in training), against a bare forward of the same chunks (27 images of 3x224x224,
what :mod:`deepvid_plugin.core.batching` gives; median of 3, before and after) times DeepVID's
forwards: 512 neighbours + 46 evidence images per instance.

16 instances at 224 px are 16 * 558 ResNet-18 forwards, about ten minutes on this 2-core CPU, so
the run explains 1 and K instances and extrapolates linearly to 16: what grows with K is the
per-instance state (region map, masks, logits, records); the chunk's activations do not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

EVIDENCE_FORWARDS = 46  # faithfulness.evidence at its default 12 steps
TARGET_INSTANCES = 16


def _kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _child(folder: Path, k: int) -> None:
    from benchmarks.faithfulness_workloads import resnet224
    from deepvid_plugin.core.batching import rows_per_chunk
    from deepvid_plugin.explain import DeepVID

    model = resnet224()
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    model.eval()
    x = torch.load(folder / "x.pt", weights_only=True)[:k]
    ids = [f"i{i}" for i in range(k)]
    chunk = rows_per_chunk(512, x[0].numel())
    probe = torch.randn(chunk, *x.shape[1:], generator=torch.Generator().manual_seed(0))

    def bare() -> float:
        """Seconds per image of a bare forward, in DeepVID's chunk size (median of 3)."""
        times = []
        with torch.no_grad():
            for _ in range(3):
                t0 = time.perf_counter()
                model(probe)
                times.append((time.perf_counter() - t0) / chunk)
        return sorted(times)[1]

    with torch.no_grad():  # torch's lazy initialisation happens before the baseline
        model(x[:1])
    base = _kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    # Lazy imports (LBFGS pulls in torch._dynamo: seconds, once per process) on another id, as a
    # training process has them after its first epoch; their memory counts (conservative).
    DeepVID(None, n_neighbours=16).explain(model, x[:1], ids=["warm-up"])
    before = bare()
    engine = DeepVID(None)
    start = time.perf_counter()
    records = engine.explain(model, x, ids=ids)
    seconds = time.perf_counter() - start
    steady = None
    if k == 1:  # a later epoch: the instance's regions and masks are cached
        start = time.perf_counter()
        engine.explain(model, x, ids=ids)
        steady = time.perf_counter() - start
    peak = _kb("VmHWM")
    per_image = (before + bare()) / 2
    n_neighbours = engine.n_neighbours
    forwards = k * (n_neighbours + EVIDENCE_FORWARDS)
    maps = torch.stack([torch.from_numpy(r.contribution_map(r.predicted)).float()
                        for r in records])
    torch.save(maps, folder / f"maps{k}.pt")
    (folder / f"run{k}.json").write_text(json.dumps({
        "k": k, "seconds": seconds, "steady_seconds": steady, "base_mb": base / 1024,
        "peak_mb": peak / 1024, "forwards": forwards, "chunk": chunk, "per_image_s": per_image,
        "agreement": sum(r.fidelity["top1_agreement"] for r in records) / k,
        "trusted": sum(r.trustworthy for r in records),
        "regions": [int(r.segments.max()) + 1 for r in records]}))


def measure(model: torch.nn.Module, x: torch.Tensor, counts: list[int]) -> dict[str, Any]:
    """Run DeepVID on the first k instances of ``x`` for each k of ``counts``, each in a fresh
    process; the runs' numbers and, for each, its maps."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="deepvid-bench-") as tmp:
        folder = Path(tmp)
        torch.save(model.state_dict(), folder / "model.pt")
        torch.save(x, folder / "x.pt")
        for k in counts:
            subprocess.run([sys.executable, "-m", "benchmarks._memory", str(folder), str(k)],
                           check=True, cwd=Path(__file__).resolve().parent.parent)
            run = json.loads((folder / f"run{k}.json").read_text())
            run["maps"] = torch.load(folder / f"maps{k}.pt", weights_only=True)
            runs.append(run)
    return {"runs": runs}


def _peak16(big: dict[str, Any]) -> tuple[float, float]:
    """(extrapolated MB beyond the model for 16 instances, MB per extra instance)."""
    first, last = big["runs"][0], big["runs"][-1]
    beyond = [r["peak_mb"] - r["base_mb"] for r in (first, last)]
    per = (beyond[1] - beyond[0]) / max(1, last["k"] - first["k"])
    return beyond[0] + (TARGET_INSTANCES - first["k"]) * max(per, 0.0), per


def targets(name: str, big: dict[str, Any], time_ratio: float, peak_gb: float) -> list[dict]:
    one = big["runs"][0]
    bare = one["forwards"] * one["per_image_s"]
    steady, first = one["steady_seconds"] / bare, one["seconds"] / bare
    mb16, per = _peak16(big)
    return [
        {"name": f"{name}: DeepVID time per instance / bare teacher forward of its images",
         "value": steady, "target": f"<= {time_ratio}", "met": steady <= time_ratio,
         "note": f"a later epoch (neighbourhood cached): {one['steady_seconds']:.1f} s against "
                 f"{bare:.1f} s for {one['forwards']} bare forwards "
                 f"({one['per_image_s'] * 1000:.0f} ms per image in chunks of {one['chunk']}); "
                 f"the first epoch, with the superpixels and masks built, {first:.2f}x "
                 f"({one['seconds']:.1f} s)"},
        {"name": f"{name}: DeepVID peak memory beyond the model, 16 instances (GB)",
         "value": mb16 / 1024, "target": f"<= {peak_gb}", "met": mb16 / 1024 <= peak_gb,
         "note": "extrapolated: " + "; ".join(
             f"{r['k']} instance(s) measured {r['peak_mb'] - r['base_mb']:.0f} MB" for r in
             big["runs"]) + f"; {per:.1f} MB per further instance"},
    ]


def describe(big: dict[str, Any]) -> str:
    return "; ".join(
        f"{r['k']} instance(s) in a fresh process: {r['seconds']:.1f} s, resident "
        f"{r['base_mb']:.0f} MB before (model, inputs, torch), peak {r['peak_mb']:.0f} MB, "
        f"regions {r['regions']}" for r in big["runs"])


if __name__ == "__main__":
    _child(Path(sys.argv[1]), int(sys.argv[2]))
