"""The models people train today: explanation time and peak memory per family and kind at 224 px,
and this project's Grad-CAM next to pytorch-grad-cam, torch-cam and captum in the same run.

Families (random init, nothing downloaded): torchvision ResNet-18 and MobileNetV3-small, timm
ViT-tiny/16 and ConvNeXt-atto, a HuggingFace ViTForImageClassification (12 layers of width 192,
as ViT-tiny; its output is a ``ModelOutput``). Inputs: ImageNet-normalised random images,
3x224x224, 10 classes.

Kinds, per family where the method applies (a refusal is reported as the row's note):

- ``gradcam``: this project's Grad-CAM of ``INSTANCES`` instances at the default layer, without
  the evidence, and the same call with the default evidence (12 steps) in a row of its own;
  the peers on the same layer and the same predicted classes: pytorch-grad-cam's ``GradCAM``
  (with the ViT's token ``reshape_transform``), torch-cam's ``GradCAM`` and captum's
  ``LayerGradCam`` + ``LayerAttribution.interpolate`` (the last two only take (N, C, h, w)
  layers: a ViT's token layer is "n/a");
- ``attribution``: captum's InputXGradient wrapped by :class:`~deepvid_plugin.explain.Attribution`,
  evidence off;
- ``netdissect``: ``PROBES`` synthetic probe images upsampled to 224, one late layer;
- ``summit``: ``PER_CLASS`` x 10 classes probe images, the last two blocks (ResNet, ConvNeXt);
- ``cam_agreement``: ``CAMDistillLoss.maps`` of a teacher/student pair of the same family.

Time: the fastest of ``REPEATS`` calls (each after one warm-up call, so one-time costs such as
finding the default layer are not counted), one torch thread; the four Grad-CAMs' calls
alternate, so load on the shared machine hits them alike. Peak memory: the process's peak
resident set during the calls minus its resident set before them (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` before each row, after ``malloc_trim`` handed freed memory back), i.e.
what the explanation adds on top of the model and its inputs. Timings on the shared 2-core development machine are noisy (other jobs run);
compare rows of the same run only.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")
SIZE, CLASSES = 224, 10
INSTANCES = 2
REPEATS = 1 if QUICK else 3
PROBES = 8 if QUICK else 16
PER_CLASS = 1 if QUICK else 2
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ---- models -----------------------------------------------------------------------------------
def _families() -> dict[str, Callable[[], torch.nn.Module]]:
    import timm
    import torchvision

    def hf_vit():
        from transformers import ViTConfig, ViTForImageClassification

        return ViTForImageClassification(ViTConfig(
            image_size=SIZE, patch_size=16, hidden_size=192, num_hidden_layers=12,
            num_attention_heads=3, intermediate_size=768, num_labels=CLASSES))

    return {
        "resnet18": lambda: torchvision.models.resnet18(num_classes=CLASSES),
        "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=CLASSES),
        "vit_tiny_patch16_224": lambda: timm.create_model("vit_tiny_patch16_224",
                                                          pretrained=False, num_classes=CLASSES),
        "convnext_atto": lambda: timm.create_model("convnext_atto", pretrained=False,
                                                   num_classes=CLASSES),
        "hf_vit (192x12)": hf_vit,
    }


# layer names per family for the kinds that need them (Grad-CAM finds its own default)
_DISSECT = {"resnet18": "layer4", "mobilenet_v3_small": "features.11",
            "vit_tiny_patch16_224": "blocks.11.norm1", "convnext_atto": "stages.3",
            "hf_vit (192x12)": "vit.layers.11.layernorm_before"}
_SUMMIT = {"resnet18": ["layer4.0", "layer4.1"],
           "mobilenet_v3_small": ["features.10", "features.11"],
           "vit_tiny_patch16_224": ["blocks.10", "blocks.11"],
           "convnext_atto": ["stages.3.blocks.0", "stages.3.blocks.1"],
           "hf_vit (192x12)": ["vit.layers.10", "vit.layers.11"]}
_CAM = {"resnet18": ("layer4", None), "mobilenet_v3_small": ("features", None),
        "vit_tiny_patch16_224": ("blocks.11", None), "convnext_atto": ("stages.3", None),
        "hf_vit (192x12)": ("vit.layers.11", None)}


def images(k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(k, 3, SIZE, SIZE, generator=g) - MEAN) / STD


# ---- measuring --------------------------------------------------------------------------------
def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))  # kB


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    # hand freed heap memory back to the OS, so the next row's peak is its own and not hidden
    # in memory an earlier row freed (glibc keeps it otherwise)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn: Callable[[], Any]) -> dict[str, Any]:
    """Fastest of REPEATS calls after a warm-up, and the peak memory they add (MB)."""
    fn()  # warm-up: default layers, oneDNN primitives, lazy imports
    gc.collect()
    _trim()
    before = _status("VmRSS")
    exact = _reset_peak()
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    peak = (_status("VmHWM") - before) / 1024 if exact else None
    return {"time_s": round(best, 3), "peak_mb": None if peak is None else round(peak, 1)}


def measure_interleaved(fns: dict[str, Callable[[], Any]]) -> dict[str, dict[str, Any]]:
    """:func:`measure` for methods compared with each other: their calls alternate, so a burst
    of load on the shared machine slows all of them, not the one that happened to run then.
    A method that raises gets its error instead of numbers."""
    out: dict[str, dict[str, Any]] = {}
    live = {}
    for name, fn in fns.items():
        try:
            fn()  # warm-up
            gc.collect()
            _trim()
            before = _status("VmRSS")
            exact = _reset_peak()
            fn()
            peak = (_status("VmHWM") - before) / 1024 if exact else None
            out[name] = {"time_s": float("inf"), "peak_mb": None if peak is None
                         else round(peak, 1), "note": ""}
            live[name] = fn
        except (ValueError, TypeError, RuntimeError) as e:
            out[name] = {"time_s": None, "peak_mb": None,
                         "note": f"n/a: {str(e).splitlines()[0][:110]}"}
    for _ in range(REPEATS):
        for name, fn in live.items():
            t = time.perf_counter()
            fn()
            out[name]["time_s"] = min(out[name]["time_s"], time.perf_counter() - t)
    for name in live:
        out[name]["time_s"] = round(out[name]["time_s"], 3)
    return out


#: DeepVID's neighbours per instance here (the default is 512).
DEEPVID_NEIGHBOURS = 128


def row(family: str, kind: str, method: str, fn: Callable[[], Any]) -> dict[str, Any]:
    out = {"family": family, "kind": kind, "method": method}
    try:
        out.update(measure(fn))
        out["note"] = ""
    except (ValueError, TypeError, RuntimeError) as e:  # a refusal (or a peer that cannot)
        out.update(time_s=None, peak_mb=None, note=f"n/a: {str(e).splitlines()[0][:110]}")
    return out


# ---- the rows ---------------------------------------------------------------------------------
def _gradcam_rows(family: str, model: torch.nn.Module, x: torch.Tensor) -> list[dict]:
    from deepvid_plugin.core.layers import grid_of
    from deepvid_plugin.core.outputs import logits_of
    from deepvid_plugin.explain import GradCAM

    ours = GradCAM(evidence_steps=None)
    first = ours.explain(model, x)
    layer_name = first.layer
    layer = model.get_submodule(layer_name)
    pred = [int(c) for c in first.pred]
    evidence_row = row(family, "gradcam", "deepvid-plugin + evidence (12 steps)",
                       lambda: GradCAM(layer_name).explain(model, x))

    class Logits(torch.nn.Module):  # the peers want a tensor of logits
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, xb):
            return logits_of(self.m(xb))

    wrapped = Logits().eval()

    def pgc():
        from pytorch_grad_cam import GradCAM as PGC
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        reshape = (lambda t: grid_of(layer_name, t, (SIZE, SIZE), model=model)) \
            if "vit" in family else None
        with PGC(model=wrapped, target_layers=[layer], reshape_transform=reshape) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in pred])

    def torchcam():
        from torchcam.methods import GradCAM as TC

        with TC(wrapped, target_layer=layer) as extractor:
            out = wrapped(x)
            maps = extractor(pred, out)[0]
            if maps.dim() != 3:
                raise ValueError(f"torch-cam gave maps of shape {tuple(maps.shape)}")
            return F.interpolate(maps[:, None], size=(SIZE, SIZE), mode="bilinear",
                                 align_corners=False)

    def captum():
        from captum.attr import LayerAttribution, LayerGradCam

        attr = LayerGradCam(wrapped, layer).attribute(x, target=torch.tensor(pred),
                                                      relu_attributions=True)
        return LayerAttribution.interpolate(attr, (SIZE, SIZE), "bilinear")

    timed = measure_interleaved({"deepvid-plugin": lambda: ours.explain(model, x),
                                 "pytorch-grad-cam": pgc, "torch-cam": torchcam,
                                 "captum": captum})
    rows = [{"family": family, "kind": "gradcam", "method": name, **got}
            for name, got in timed.items()]
    rows.insert(1, evidence_row)
    ours_t = rows[0]["time_s"]
    for r in rows:
        r["vs_ours"] = (round(r["time_s"] / ours_t, 2) if r["time_s"] is not None and ours_t
                        else None)
    return rows


def _other_rows(family: str, build: Callable[[], torch.nn.Module], model: torch.nn.Module,
                x: torch.Tensor) -> list[dict]:
    from captum.attr import InputXGradient

    from deepvid_plugin.explain import (
        Attribution,
        CAMDistillLoss,
        ConceptSet,
        DeepVID,
        NetDissect,
        Summit,
    )

    rows = [row(family, "attribution", "captum InputXGradient", lambda: Attribution(
        lambda m, xb, t: InputXGradient(m).attribute(xb, target=t),
        evidence_steps=None).explain(model, x))]
    probes = ConceptSet.synthetic(n=PROBES, size=32, seed=0)

    def to_model(p):
        return F.interpolate((p - MEAN) / STD, size=(SIZE, SIZE), mode="bilinear",
                             align_corners=False)

    rows.append(row(family, "netdissect", f"{_DISSECT[family]}, {PROBES} probes", lambda: NetDissect(
        probes, [_DISSECT[family]], transform=to_model, batch_size=8).dissect(model)))
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    data = images(len(labels), seed=1)
    rows.append(row(family, "summit", f"{'+'.join(_SUMMIT[family])}, {len(labels)} images",
                    lambda: Summit(data, labels, _SUMMIT[family], per_class=PER_CLASS,
                                   batch_size=8).aggregate(model)))
    layer, _ = _CAM[family]
    torch.manual_seed(1)
    student = build().eval()
    rows.append(row(family, "cam_agreement", f"CAMDistillLoss.maps at {layer}", lambda: (
        CAMDistillLoss(model, student, layer, layer).maps(x))))
    # DeepVID at 224 px: the region student (superpixels, no VAE), fewer neighbours than the
    # default 512 to keep the bench short; time and memory grow linearly with them
    rows.append(row(family, "deepvid", f"superpixels, {DEEPVID_NEIGHBOURS} neighbours",
                    lambda: DeepVID(None, n_neighbours=DEEPVID_NEIGHBOURS, batch_size=64)
                    .explain(model, x)))
    return rows


def run() -> dict[str, Any]:
    torch.set_num_threads(1)
    rows: list[dict] = []
    for family, build in _families().items():
        torch.manual_seed(0)
        model = build().eval()
        x = images(INSTANCES)
        rows += _gradcam_rows(family, model, x)
        rows += _other_rows(family, build, model, x)
    ratios = [r["vs_ours"] for r in rows if r["kind"] == "gradcam" and r.get("vs_ours")
              and r["method"] in ("pytorch-grad-cam", "torch-cam", "captum")]
    return {
        "title": "Models people train today: time and peak memory per family and kind (224 px)",
        "settings": {"size": SIZE, "classes": CLASSES, "instances": INSTANCES,
                     "repeats": REPEATS, "probes": PROBES, "summit_per_class": PER_CLASS,
                     "torch_threads": 1, "quick": QUICK},
        "rows": rows,
        "notes": [
            "time_s: fastest of the repeats after a warm-up; peak_mb: the peak resident set "
            "the calls add (VmHWM after minus VmRSS before). n/a rows: the method refuses this "
            "model (the note says why) or, for a peer, cannot take its layer.",
            "vs_ours: a Grad-CAM peer's time over this project's Grad-CAM without evidence, on "
            f"the same layer, classes and images (peers slower in {sum(r > 1 for r in ratios)} "
            f"of {len(ratios)} comparisons).",
            "Timings are from the shared 2-core development machine with other jobs running: "
            "compare rows of one run only.",
        ],
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(), indent=1, default=str))
