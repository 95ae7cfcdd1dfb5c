"""`DeepVID`: explain a classifier's decision on an instance with a distilled linear student.

Wang et al., "DeepVID: Deep Visual Interpretation and Diagnosis for Image Classifiers via
Knowledge Distillation", IEEE TVCG 25(6), 2019.

The explainer receives its parts (the generator; the model at call time) rather than building
them, captum-style. Neighbours are cached per instance id: they are sampled once (seeded) and
reused at every call, so the generator runs once per instance and a change of explanation across
epochs is a change of the model, never of the sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from deepvid_plugin.explain._guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.explain.fidelity import fidelity_metrics
from deepvid_plugin.explain.generator import Generator
from deepvid_plugin.explain.neighbours import instance_seed, sample_neighbours
from deepvid_plugin.explain.student import fit_students
from deepvid_plugin.record import ExplanationRecord

Model = Callable[[torch.Tensor], torch.Tensor]


class DeepVID:
    """Explain image classifiers with DeepVID.

    Args:
        generator: anything with ``encode``/``decode`` (see :class:`Generator`), usually a fitted
            :class:`~deepvid_plugin.explain.VAE`.
        n_neighbours: neighbours per instance (>= 10), the reconstruction included.
        radius: latent radius, a scalar or one value per latent dimension.
        temperature: distillation temperature T (> 0). Higher T transfers more of the teacher's
            "dark knowledge" about second choices.
        seed: seeds the neighbours (per instance id) and the hold-out split.
        holdout: fraction of neighbours kept for fidelity, never used for fitting.
        l2: relative L2 strength of the student; ``None`` picks it by held-out KL.
        batch_size: teacher/generator chunk size.
        n_shown: neighbours kept in each record for display (taken from the hold-out).
        refine_steps: LBFGS steps on the KL objective after the closed-form warm start.

    The model must return logits (unnormalised scores) of shape ``(N, n_classes)``.
    """

    def __init__(self, generator: Generator, n_neighbours: int = 512, radius: Any = 0.5,
                 temperature: float = 2.0, seed: int = 0, holdout: float = 0.2,
                 l2: float | None = None, batch_size: int = 512, n_shown: int = 32,
                 refine_steps: int = 10):
        if not (callable(getattr(generator, "encode", None))
                and callable(getattr(generator, "decode", None))):
            raise TypeError(f"generator: expected an object with encode() and decode() (e.g. a "
                            f"fitted VAE), got {type(generator).__name__}")
        _check_int("n_neighbours", n_neighbours, minimum=10)
        _check_int("batch_size", batch_size, minimum=1)
        _check_int("n_shown", n_shown, minimum=0)
        _check_int("refine_steps", refine_steps, minimum=0)
        _check_int("seed", seed, minimum=0)
        if not isinstance(temperature, (int, float)) or not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature: expected a finite number > 0, got {temperature!r}")
        if not isinstance(holdout, float) or not 0.05 <= holdout <= 0.5:
            raise ValueError(f"holdout: expected a float in [0.05, 0.5], got {holdout!r}")
        if l2 is not None and (not isinstance(l2, (int, float)) or not l2 > 0):
            raise ValueError(f"l2: expected None (automatic) or a number > 0, got {l2!r}")
        r = torch.as_tensor(radius, dtype=torch.float32)
        if r.dim() > 1 or not torch.isfinite(r).all() or (r < 0).any():
            raise ValueError(f"radius: expected a non-negative scalar or one value per latent "
                             f"dimension, got {radius!r}")
        self.generator = generator
        self.n_neighbours = int(n_neighbours)
        self.radius = r
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.holdout = float(holdout)
        self.l2 = l2
        self.batch_size = int(batch_size)
        self.n_shown = int(n_shown)
        self.refine_steps = int(refine_steps)
        self._neighbours: dict[str, torch.Tensor] = {}  # instance id -> (M, C, H, W), on CPU

    # ---- public API ----------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"method": "deepvid", "n_neighbours": self.n_neighbours,
                "radius": self.radius.tolist(), "temperature": self.temperature,
                "seed": self.seed, "holdout": self.holdout, "l2": self.l2,
                "refine_steps": self.refine_steps}

    def neighbours(self, x: torch.Tensor, ids: Sequence[str]) -> torch.Tensor:
        """(K, M, C, H, W) cached neighbours of ``x``; sampled on first use of each id."""
        missing = [i for i, iid in enumerate(ids) if iid not in self._neighbours]
        if missing:
            with preserved_rng(), frozen_eval(self.generator):
                dev = _generator_device(self.generator)
                xs = x[missing].to(dev, torch.float32)
                new = sample_neighbours(self.generator, xs, [ids[i] for i in missing],
                                        self.n_neighbours, self.radius.to(dev), self.seed,
                                        self.batch_size)
            for j, i in enumerate(missing):
                self._neighbours[ids[i]] = new[j].detach().to("cpu", torch.float32)
        return torch.stack([self._neighbours[iid] for iid in ids])

    def explain(self, model: Model, x: torch.Tensor, ids: Sequence[str] | None = None,
                labels: Sequence[int] | torch.Tensor | None = None,
                class_names: Sequence[str] | None = None, step: int = 0) -> list[ExplanationRecord]:
        """One :class:`ExplanationRecord` per instance of ``x`` (K, C, H, W).

        The model is run in eval mode under no_grad, in chunks of ``batch_size``, on its own
        device; every module's ``training`` flag and every RNG state are restored afterwards.
        """
        x = _check_images(x)
        _check_generator_shape(self.generator, x)
        k = x.shape[0]
        ids = _check_ids(ids, k)
        labels_list = _check_labels(labels, k)
        with preserved_rng():
            nb = self.neighbours(x, ids)  # (K, M, C, H, W)
            with frozen_eval(model):
                device, dtype = module_device_dtype(model)
                flat = torch.cat([x.unsqueeze(1).to(nb.dtype), nb], 1).flatten(0, 1)
                logits = torch.cat([_run(model, chunk.to(device, dtype), chunk.shape[0])
                                    for chunk in flat.split(self.batch_size)]).float().cpu()
            logits = logits.view(k, self.n_neighbours + 1, -1)
            n_classes = logits.shape[-1]
            class_names = _check_class_names(class_names, n_classes)
            if labels_list is not None and any(not 0 <= lab < n_classes for lab in labels_list):
                raise ValueError(f"labels: expected class indices in [0, {n_classes}), got "
                                 f"{labels_list}")
            return self._distil(x, nb, logits, ids, labels_list, class_names, step)

    # ---- internals -----------------------------------------------------------------------------
    def _split(self, ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fit / hold-out neighbour indices. Row 0 (the reconstruction) is always fitted on.

        Same permutation for every instance (so the batched solve sees equal shapes), seeded by
        ``seed`` only, so it is stable across epochs."""
        m = self.n_neighbours
        n_hold = max(2, int(round(m * self.holdout)))
        gen = torch.Generator().manual_seed(instance_seed(self.seed, "\0holdout"))
        perm = torch.randperm(m - 1, generator=gen) + 1
        return torch.cat([torch.zeros(1, dtype=torch.long), perm[n_hold:]]), perm[:n_hold]

    def _distil(self, x, nb, logits, ids, labels, class_names, step) -> list[ExplanationRecord]:
        k, m = nb.shape[:2]
        fit_idx, hold_idx = self._split(ids)
        inst_logits, nb_logits = logits[:, 0], logits[:, 1:]
        flat = nb.flatten(2)  # (K, M, D)
        gen = torch.Generator().manual_seed(instance_seed(self.seed, "\0val"))
        # The instance itself is a fitting row too: VAE neighbours are smoother than real images,
        # and without this anchor a linear student can extrapolate wrongly to the crisp instance
        # (measured on 48 digits at default settings: instance agreement 45/48 -> 48/48,
        # trustworthy 45/48 -> 47/48).
        fit_x = torch.cat([x.flatten(1).unsqueeze(1), flat[:, fit_idx]], 1)
        fit_logits = torch.cat([inst_logits.unsqueeze(1), nb_logits[:, fit_idx]], 1)
        student = fit_students(fit_x, fit_logits, self.temperature, l2=self.l2,
                               refine_steps=self.refine_steps, generator=gen)
        t_hold = F.softmax(nb_logits[:, hold_idx].double(), -1)
        s_hold = F.softmax(student.logits(flat[:, hold_idx]).double(), -1)
        t_inst = F.softmax(inst_logits.double(), -1)
        s_inst = F.softmax(student.logits(x.flatten(1).unsqueeze(1).float()).squeeze(1).double(), -1)
        top = t_inst.argmax(-1)
        fid = fidelity_metrics(t_hold, s_hold, top, top == s_inst.argmax(-1))
        shown = hold_idx[: self.n_shown]
        settings = {**self.settings(), "l2": float(student.l2[0]) if self.l2 is None else self.l2}
        records = []
        c, h, w = x.shape[1:]
        for i in range(k):
            records.append(ExplanationRecord(
                instance_id=ids[i], step=int(step), class_names=tuple(class_names),
                image=x[i].numpy(), teacher_probs=t_inst[i].float().numpy(),
                student_probs=s_inst[i].float().numpy(),
                weights=student.weight[i].T.reshape(-1, c, h, w).numpy(),
                bias=student.bias[i].numpy(), fidelity=fid[i],
                neighbours=nb[i, shown].numpy(),
                neighbour_teacher=t_hold[i, : len(shown)].argmax(-1).numpy(),
                neighbour_student=s_hold[i, : len(shown)].argmax(-1).numpy(),
                settings={**settings, "l2": float(student.l2[i])},
                label=None if labels is None else labels[i]))
        return records


def _run(model: Model, xb: torch.Tensor, n: int) -> torch.Tensor:
    out = model(xb)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model output: expected a tensor of logits, got {type(out).__name__}")
    if out.dim() != 2 or out.shape[0] != n or out.shape[1] < 2:
        raise ValueError(f"model output: expected logits of shape ({n}, n_classes >= 2), got "
                         f"{tuple(out.shape)}")
    if not torch.isfinite(out).all():
        raise ValueError("model output: expected finite logits, got NaN or inf "
                         f"({int((~torch.isfinite(out)).sum())} non-finite values)")
    return out


def _generator_device(generator: object) -> torch.device:
    return module_device_dtype(generator)[0]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


def _check_images(x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor of images (K, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (use x.unsqueeze(0) for a single image)" if x.dim() == 3 else ""
        raise ValueError(f"x: expected a 4-d tensor (K, C, H, W), got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x: expected at least one instance, got 0")
    return x.detach().to("cpu", torch.float32)


def _check_generator_shape(generator: object, x: torch.Tensor) -> None:
    """Catch a channel/size mismatch with a VAE here, with a clear message, instead of as a
    convolution shape error deep inside the generator."""
    cfg = getattr(generator, "config", None)
    want = tuple(getattr(cfg, a, None) for a in ("channels", "height", "width"))
    want = want if None not in want else getattr(generator, "shape", None)
    if want is not None and tuple(x.shape[1:]) != tuple(want):
        raise ValueError(f"x: expected images of shape (K, {want[0]}, {want[1]}, {want[2]}) to "
                         f"match the generator, got {tuple(x.shape)}")


def _check_ids(ids: Sequence[str] | None, k: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(k)]
    ids = [str(i) for i in ids]
    if len(ids) != k:
        raise ValueError(f"ids: expected {k} ids (one per instance), got {len(ids)}")
    if len(set(ids)) != k:
        raise ValueError(f"ids: expected unique ids, got duplicates in {ids}")
    return ids


def _check_labels(labels: Any, k: int) -> list[int] | None:
    if labels is None:
        return None
    values = labels.tolist() if isinstance(labels, (torch.Tensor, np.ndarray)) else list(labels)
    if len(values) != k:
        raise ValueError(f"labels: expected {k} labels (one per instance), got {len(values)}")
    return [int(v) for v in values]


def _check_class_names(names: Sequence[str] | None, n_classes: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(n_classes)]
    names = [str(n) for n in names]
    if len(names) != n_classes:
        raise ValueError(f"class_names: expected {n_classes} names (the model outputs "
                         f"{n_classes} classes), got {len(names)}")
    return names
