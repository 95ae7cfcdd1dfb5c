"""`DeepVID`: explain a classifier's decision on an instance with a distilled linear student.

Wang et al., "DeepVID: Deep Visual Interpretation and Diagnosis for Image Classifiers via
Knowledge Distillation", IEEE TVCG 25(6), 2019.

The explainer receives its parts (the generator; the model at call time) rather than building
them, captum-style. Neighbours are cached per instance id and the content of its image: they are
sampled once (seeded) and reused at every call (an id sent with another image is resampled), so
the generator runs once per instance and a change of explanation across epochs is a change of the
model, never of the sample. Everything of the student's solver that
depends only on those fixed rows (Gram matrices, their factorisations, the L2 validation split)
is cached per instance id too, so later epochs only redo the teacher-dependent part.

**Neighbourhood** (``neighbourhood``, ``jitter``). The paper's neighbours, ``decode(z + r*eps)``,
vary only inside the VAE's 16-dimensional latent subspace, so the linear student cannot tell
apart pixels that co-vary there and spreads its weight over all of them: its maps then score far
worse than LIME's or Integrated Gradients' on deletion/insertion, and a teacher that only sees a
planted region gets maps with most of their weight outside it. The default ``"vae+jitter"`` adds
independent Gaussian pixel noise of std ``jitter`` (default 0.05, in the images' own units) to
every decoded neighbour: the neighbours stay semantic variations of the instance (the noise is
faint), and every pixel now varies on its own, so the student can find the ones the model uses.
``"vae"`` keeps the old pure-manifold neighbours, for comparison.

Measured (throwaway script, CPU, on a loaded 2-core box; 32 test digits; the demo's CNN and an
MLP; 512 neighbours; deletion/insertion with 16 steps ranking pixels by the contribution map
``w[pred] * x``; "mass" = share of the student's absolute weights, all classes, inside a fixed
mask of 25% of the pixels that the teacher multiplies its input by: a central vertical stripe
or the top-left quadrant; "agreement" = held-out top-1 agreement)::

    digits  model  neighbourhood          deletion  insertion  agreement  stripe  quadrant
    16x16   CNN    vae                      0.345     0.731      0.991     0.32    0.33
    16x16   CNN    vae+jitter 0.02          0.071     0.955      0.986     0.48    0.47
    16x16   CNN    vae+jitter 0.05          0.062     0.961      0.983     0.57    0.52
    16x16   CNN    vae+jitter 0.1           0.061     0.964      0.968     0.59    0.51
    16x16   CNN    jitter 0.15*std(x)       0.063     0.960      0.982     0.57    0.52
    16x16   CNN    half vae, half x+N(0.1)  0.068     0.959      0.989     0.51    0.44
    8x8     CNN    vae                      0.149     0.902      0.980     0.41    0.42
    8x8     CNN    vae+jitter 0.02          0.109     0.921      0.980     0.65    0.62
    8x8     CNN    vae+jitter 0.05          0.110     0.926      0.972     0.78    0.76
    8x8     CNN    vae+jitter 0.1           0.107     0.929      0.962     0.81    0.79
    8x8     CNN    jitter 0.15*std(x)       0.108     0.926      0.969     0.79    0.77
    8x8     CNN    half vae, half x+N(0.1)  0.108     0.928      0.987     0.78    0.76
    16x16   MLP    vae                      0.332     0.903      0.996     0.36    0.38
    16x16   MLP    vae+jitter 0.05          0.074     0.950      0.993     0.73    0.72
    8x8     MLP    vae                      0.083     0.936      0.997     0.69    0.58
    8x8     MLP    vae+jitter 0.05          0.071     0.940      0.997     0.94    0.89
    peers (16x16 CNN): InputXGradient 0.060 / 0.962, random map 0.560 / 0.526
    peers (16x16 MLP): InputXGradient 0.061 / 0.951, random map 0.652 / 0.617
    peers (8x8 CNN):   InputXGradient 0.103 / 0.919, random map 0.527 / 0.510
    peers (8x8 MLP):   InputXGradient 0.069 / 0.940, random map 0.568 / 0.501

Jitter 0.05 is the choice: it reaches Input x Gradient's deletion/insertion AUC (pure VAE
neighbours: 5.8x worse deletion at 16x16), multiplies the planted-region mass by 1.8 (8x8) and
1.6-1.8 (16x16), and keeps held-out agreement >= 0.97; 0.1 gains little more mass and drops the
CNN's agreement below 0.97 (0.962 at 8x8). Scaling the jitter per instance (0.15 times the
instance's pixel std) measured the same as 0.05 on digits, and a mixture of pure manifold and
pure pixel neighbours gave less mass at 16x16: neither earns its extra complexity. At 16x16 the
weight mass stays below 0.6 (the weight on the 75% of pixels outside the region is mostly fit
noise, so the mass grows with more neighbours: stripe 0.45, 0.52, 0.57, 0.68 and quadrant 0.42,
0.48, 0.52, 0.64 at 256, 384, 512, 1024); the mass of the contribution map ``|w[pred] * x|``
there is 0.78 (stripe) and 0.61 (quadrant) at 512. Users with larger images who need the
weights themselves to be sharp should raise ``n_neighbours``.

**n_neighbours** (default 512), the fewest of 256/384/512 that keep held-out agreement >= 0.97
and the planted-region mass >= 0.6: 256 fails agreement on the 8x8 CNN (0.962); 384 passes there
narrowly (0.973; masses 0.75/0.72) but not at 16x16 (quadrant contribution mass 0.55, weight mass
0.52), where only 512 comes close (0.61/0.57). 512 is also the size the per-record evidence's
budget (<= 10% of an epoch's teacher forwards) is set for.

**Neighbours shown in records** are exactly the images the teacher labelled, jitter included:
the teacher's and student's labels printed next to them are for those very images, and a user
who sees the faint noise sees what the explanation was fitted on. At ``jitter=0.05`` on images in
[0, 1] the digits stay plainly readable.

**Evidence.** After distilling, every record's ``fidelity`` gets the deletion/insertion evidence
of its contribution map against the model on the instance, next to a random map's
(:func:`~deepvid_plugin.core.faithfulness.evidence`), and the trust rule of
:mod:`~deepvid_plugin.methods.deepvid.fidelity` uses it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from deepvid_plugin.core import checks
from deepvid_plugin.core.content import content_key
from deepvid_plugin.core.faithfulness import evidence
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import check_outputs, check_transform, logits_of
from deepvid_plugin.core.seeds import instance_seed
from deepvid_plugin.methods.deepvid.fidelity import apply_trust_rule, fidelity_metrics
from deepvid_plugin.methods.deepvid.generator import Generator
from deepvid_plugin.methods.deepvid.lbfgs import softmax_classes
from deepvid_plugin.methods.deepvid.neighbours import sample_neighbours
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.methods.deepvid.student import SolverState, fit_students, prepare_solver

Model = Callable[[torch.Tensor], torch.Tensor]

NEIGHBOURHOODS = ("vae+jitter", "vae")
DEFAULT_JITTER = 0.05  # pixel noise std, in the images' own units (see the class docstring)
DEFAULT_N_NEIGHBOURS = 512


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
        neighbourhood: ``"vae+jitter"`` (default: decoded neighbours plus pixel jitter) or
            ``"vae"`` (decoded neighbours only, the paper's); see the module docstring for the
            measurements behind the default.
        jitter: std of the pixel jitter in the images' own units; ``None`` means
            :data:`DEFAULT_JITTER` (0.05, chosen for images in [0, 1]; scale it with your
            normalisation, e.g. about 0.2 for ImageNet-normalised inputs) for ``"vae+jitter"``
            and none for ``"vae"``.
        outputs: ``"logits"`` (default) or ``"probs"`` for a model that ends in a softmax
            (its log is distilled). With ``"logits"``, outputs that look like probabilities
            (every row in [0, 1] summing to 1, or every value in [0, 1]: a final sigmoid) are
            refused: distilling them as logits gives a near-flat teacher. ``"sigmoid"``
            (multi-label) is refused: the paper's student is a softmax over classes.
        output_transform: a callable from the model's output to its ``(N, n_classes)`` logits;
            HuggingFace outputs, dicts with ``"logits"`` and tuples are recognised without it
            (:func:`~deepvid_plugin.core.outputs.logits_of`).

    The model must return logits (unnormalised scores) of shape ``(N, n_classes)``, or
    probabilities with ``outputs="probs"``. All settings go into every record's ``settings``.

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import DeepVID, PixelGenerator
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> x = torch.rand(2, 1, 8, 8)
        >>> records = DeepVID(PixelGenerator((1, 8, 8)), n_neighbours=64).explain(
        ...     model, x, class_names=["a", "b", "c"])
        >>> [r.weights.shape for r in records]
        [(3, 1, 8, 8), (3, 1, 8, 8)]
        >>> 0.0 <= records[0].fidelity["top1_agreement"] <= 1.0
        True
    """

    def __init__(self, generator: Generator, n_neighbours: int = DEFAULT_N_NEIGHBOURS,
                 radius: Any = 0.5, temperature: float = 2.0, seed: int = 0, holdout: float = 0.2,
                 l2: float | None = None, batch_size: int = 512, n_shown: int = 32,
                 refine_steps: int = 10, neighbourhood: str = "vae+jitter",
                 jitter: float | None = None, outputs: str = "logits",
                 output_transform: Callable[[Any], Any] | None = None):
        self.generator = checks.generator(generator)
        self.n_neighbours = checks.integer("n_neighbours", n_neighbours, 10)
        self.radius = checks.radius(radius)
        self.temperature = checks.positive("temperature", temperature)
        self.seed = checks.integer("seed", seed, 0)
        self.holdout = checks.fraction("holdout", holdout, 0.05, 0.5)
        self.l2 = checks.optional_positive("l2", l2)
        self.batch_size = checks.integer("batch_size", batch_size, 1)
        self.n_shown = checks.integer("n_shown", n_shown, 0)
        self.refine_steps = checks.integer("refine_steps", refine_steps, 0)
        self.neighbourhood = checks.choice("neighbourhood", neighbourhood, NEIGHBOURHOODS)
        self.jitter = _check_jitter(neighbourhood, jitter)
        self.outputs = _check_outputs(outputs)
        self.output_transform = check_transform("output_transform", output_transform)
        self._neighbours: dict[str, torch.Tensor] = {}  # instance id -> (M, C, H, W), on CPU
        self._content: dict[str, str] = {}  # instance id -> content key of its image
        self._solver: dict[str, SolverState] = {}  # instance id -> its student solver state

    # ---- public API ----------------------------------------------------------------------------
    def as_explainer(self, every_n_epochs: int = 1) -> Any:
        """This engine as a callback's explainer (kind ``deepvid``) on that schedule."""
        from deepvid_plugin.methods.deepvid.explainer import DeepVIDExplainer

        return DeepVIDExplainer(self, every_n_epochs=every_n_epochs)

    def settings(self) -> dict[str, Any]:
        return {"method": "deepvid", "n_neighbours": self.n_neighbours,
                "radius": self.radius.tolist(), "temperature": self.temperature,
                "seed": self.seed, "holdout": self.holdout, "l2": self.l2,
                "refine_steps": self.refine_steps, "neighbourhood": self.neighbourhood,
                "jitter": self.jitter, "outputs": self.outputs}

    def neighbours(self, x: torch.Tensor, ids: Sequence[str]) -> torch.Tensor:
        """(K, M, C, H, W) cached neighbours of ``x``; sampled on first use of each id, and
        again when an id comes back with another image (a cache keyed by id alone would
        explain the new image on the old one's neighbours)."""
        keys = [content_key(x[i]) for i in range(len(ids))]
        changed = [iid for iid, key in zip(ids, keys, strict=True)
                   if iid in self._content and self._content[iid] != key]
        if changed:
            warnings.warn(f"ids: {changed} were explained before with other images; their "
                          f"neighbours are sampled anew (give distinct instances distinct ids "
                          f"to keep their timelines apart)", stacklevel=3)
        missing = [i for i, iid in enumerate(ids)
                   if iid not in self._neighbours or self._content.get(iid) != keys[i]]
        if missing:
            with preserved_rng(), frozen_eval(self.generator):
                dev = _generator_device(self.generator)
                xs = x[missing].to(dev, torch.float32)
                new = sample_neighbours(self.generator, xs, [ids[i] for i in missing],
                                        self.n_neighbours, self.radius.to(dev), self.seed,
                                        self.batch_size, jitter=self.jitter)
            for j, i in enumerate(missing):
                self._neighbours[ids[i]] = new[j].detach().to("cpu", torch.float32)
                self._content[ids[i]] = keys[i]
        return torch.stack([self._neighbours[iid] for iid in ids])

    def explain(self, model: Model, x: torch.Tensor, ids: Sequence[str] | None = None,
                labels: Sequence[int] | torch.Tensor | None = None,
                class_names: Sequence[str] | None = None, step: int = 0) -> list[ExplanationRecord]:
        """One :class:`ExplanationRecord` per instance of ``x`` (K, C, H, W).

        The model is run in eval mode under no_grad, in chunks of ``batch_size``, on its own
        device; every module's ``training`` flag and every RNG state are restored afterwards.
        Teacher forwards per instance: the instance and its ``n_neighbours`` neighbours, then
        the faithfulness evidence's deletion/insertion images (46 at its default 12 steps).
        """
        step = checks.integer("step", step)  # 1.7 was stored as step 1
        x = checks.images("x", x).to("cpu", torch.float32)
        _check_generator_shape(self.generator, x)
        k = x.shape[0]
        ids = checks.ids(ids, k)
        labels_list = checks.labels(labels, k)
        with preserved_rng():
            nb = self.neighbours(x, ids)  # (K, M, C, H, W)
            with frozen_eval(model):
                device, dtype = module_device_dtype(model)
                rows = torch.cat([x.unsqueeze(1).to(nb.dtype), nb], 1)  # (K, M + 1, ...)
                logits = torch.stack([
                    torch.cat([_run(model, chunk.to(device, dtype), chunk.shape[0],
                                    self.outputs, self.output_transform)
                               for chunk in _chunks(inst, self.batch_size)])
                    for inst in rows]).float().cpu()
            n_classes = logits.shape[-1]
            class_names = (checks.class_names(class_names, n_classes)
                           or [str(i) for i in range(n_classes)])
            labels_list = checks.labels(labels_list, k, n_classes)  # now the range is known
            return self._distil(x, nb, logits, ids, labels_list, class_names, step, model)

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

    def _solver_state(self, fit_x: torch.Tensor, ids: Sequence[str]) -> SolverState:
        """The student's x-only solver work for these fitting rows, built once per instance id.

        The rows (instance + fixed neighbours) never change for an id, so Gram matrices, their
        factorisations and the L2 validation split are reused at every later call. Every
        instance's split comes from the same seeded generator (same permutation), so states
        built in different calls can be joined. A cached state whose rows no longer match
        (the same id sent with another image) is rebuilt rather than trusted."""
        missing = [i for i, iid in enumerate(ids)
                   if iid not in self._solver or not self._solver[iid].matches(fit_x[i : i + 1])]
        for i in missing:  # one at a time: an instance's state never depends on the batch
            gen = torch.Generator().manual_seed(instance_seed(self.seed, "\0val"))
            self._solver[ids[i]] = prepare_solver(fit_x[i : i + 1], l2=self.l2, generator=gen)
        return SolverState.concat([self._solver[iid] for iid in ids])

    def _distil(self, x, nb, logits, ids, labels, class_names, step, model
                ) -> list[ExplanationRecord]:
        k, m = nb.shape[:2]
        fit_idx, hold_idx = self._split(ids)
        inst_logits, nb_logits = logits[:, 0], logits[:, 1:]
        flat = nb.flatten(2)  # (K, M, D)
        # The instance itself is a fitting row too: VAE neighbours are smoother than real images,
        # and without this anchor a linear student can extrapolate wrongly to the crisp instance
        # (measured on 48 digits at default settings: instance agreement 45/48 -> 48/48,
        # trustworthy 45/48 -> 47/48).
        fit_x = torch.cat([x.flatten(1).unsqueeze(1), flat[:, fit_idx]], 1)
        fit_logits = torch.cat([inst_logits.unsqueeze(1), nb_logits[:, fit_idx]], 1)
        student = fit_students(fit_x, fit_logits, self.temperature, l2=self.l2,
                               refine_steps=self.refine_steps,
                               state=self._solver_state(fit_x, ids))
        t_hold = softmax_classes(nb_logits[:, hold_idx].double())
        s_hold = softmax_classes(student.logits(flat[:, hold_idx]).double())
        t_inst = F.softmax(inst_logits.double(), -1)
        s_inst = F.softmax(student.logits(x.flatten(1).unsqueeze(1).float()).squeeze(1).double(), -1)
        top = t_inst.argmax(-1)
        fid = fidelity_metrics(t_hold, s_hold, top, top == s_inst.argmax(-1))
        c, h, w = x.shape[1:]
        weights = student.weight.transpose(1, 2).reshape(k, -1, c, h, w)  # (K, classes, C, H, W)
        # The map the UI draws and the evidence scores: the linear contribution w[pred] * x.
        contribution = (weights[torch.arange(k), top] * x).sum(1)  # (K, H, W)
        ev = evidence(model, x, contribution, top, ids, seed=self.seed,
                      batch_size=self.batch_size, outputs=self.outputs,
                      output_transform=self.output_transform)
        fid = [apply_trust_rule({**f, **e}) for f, e in zip(fid, ev, strict=True)]
        # Shown neighbours are exactly the images the teacher labelled (jitter included): the
        # labels next to them are the teacher's and the student's on those very images.
        shown = hold_idx[: self.n_shown]
        records = []
        for i in range(k):
            records.append(ExplanationRecord(
                instance_id=ids[i], step=step, class_names=tuple(class_names),
                image=x[i].numpy(), teacher_probs=t_inst[i].float().numpy(),
                student_probs=s_inst[i].float().numpy(),
                weights=weights[i].numpy(),
                bias=student.bias[i].numpy(), fidelity=fid[i],
                neighbours=nb[i, shown].numpy(),
                neighbour_teacher=t_hold[i, : len(shown)].argmax(-1).numpy(),
                neighbour_student=s_hold[i, : len(shown)].argmax(-1).numpy(),
                settings={**self.settings(), "l2": float(student.l2[i])},
                label=None if labels is None else labels[i]))
        return records


def _check_outputs(outputs: Any) -> str:
    if outputs == "sigmoid":
        raise ValueError("outputs: DeepVID's student is a softmax over classes (the paper's "
                         "distillation), so it cannot mimic independent sigmoid outputs; got "
                         "'sigmoid'. Explain a multi-label model with GradCAM(outputs='sigmoid') "
                         "or Attribution(..., outputs='sigmoid')")
    return check_outputs(outputs, ("logits", "probs"))


def _chunks(rows: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """One instance's rows in near-equal chunks of at most ``batch_size``, never mixed with
    another instance's: a model's output for an image can differ in the last bits with the
    size of the batch it was in (measured on CPU: ResNet-18 logits 3e-7 apart for a batch of 1
    and of 600), so an instance's teacher labels, and so its student, must not depend on which
    instances share its batches or how many there are."""
    n = rows.shape[0]
    return rows.tensor_split(-(-n // batch_size))


def _run(model: Model, xb: torch.Tensor, n: int, outputs: str = "logits",
         output_transform: Callable[[Any], Any] | None = None) -> torch.Tensor:
    # HuggingFace outputs, dicts and tuples are recognised; output_transform for the rest
    out = logits_of(model(xb), output_transform, n=n, min_classes=2)
    if not torch.isfinite(out).all():
        raise ValueError("model output: expected finite logits, got NaN or inf "
                         f"({int((~torch.isfinite(out)).sum())} non-finite values)")
    return _as_logits(out, outputs)


def _looks_like_probs(out: torch.Tensor) -> bool:
    """Every row in [0, 1] and summing to 1: what a final softmax returns. Logits essentially
    never do this by accident (it would take every row of every chunk)."""
    o = out.detach().double()
    return bool(((o >= 0) & (o <= 1)).all() and ((o.sum(1) - 1).abs() <= 1e-2).all())


def _looks_like_sigmoid(out: torch.Tensor) -> bool:
    """Every value in [0, 1] over enough values that logits would not do it by chance (a
    trained or random model's logits take negative values somewhere in a chunk)."""
    o = out.detach()
    return o.numel() >= 32 and bool(((o >= 0) & (o <= 1)).all())


def _as_logits(out: torch.Tensor, outputs: str) -> torch.Tensor:
    """Logits for the distillation. Probabilities distilled as if they were logits give a
    near-flat teacher (softmax of numbers in [0, 1]), so they are refused unless declared."""
    probs = _looks_like_probs(out)
    if outputs == "logits":
        if probs:
            raise ValueError("model output: expected logits, got probabilities (every row is in "
                             "[0, 1] and sums to 1): remove the model's final softmax, or pass "
                             "outputs='probs' to DeepVID")
        if _looks_like_sigmoid(out):
            raise ValueError("model output: expected logits, got values all in [0, 1] that do "
                             "not sum to 1 per row (a final sigmoid?): remove it, or pass "
                             "output_transform=... returning the logits (DeepVID explains one "
                             "class per image; for a multi-label model use "
                             "GradCAM(outputs='sigmoid'))")
        return out
    if not probs:
        raise ValueError("model output: outputs='probs' expects probabilities (rows in [0, 1] "
                         "summing to 1), got values outside [0, 1] or rows not summing to 1")
    # log(p) is a valid logit vector (softmax(log p) = p); the floor keeps an underflowed 0
    # finite instead of -inf.
    return out.clamp_min(torch.finfo(out.dtype).tiny).log()


def _check_jitter(neighbourhood: str, jitter: Any) -> float:
    """The effective jitter: the default for "vae+jitter", 0.0 for "vae"."""
    if jitter is None:
        return DEFAULT_JITTER if neighbourhood == "vae+jitter" else 0.0
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not math.isfinite(jitter):
        raise ValueError(f"jitter: expected None (the default) or a finite number, got {jitter!r}")
    if neighbourhood == "vae" and jitter != 0:
        raise ValueError(f"jitter: neighbourhood='vae' adds no pixel jitter, so expected None or "
                         f"0, got {jitter!r} (use neighbourhood='vae+jitter')")
    if neighbourhood == "vae+jitter" and not jitter > 0:
        raise ValueError(f"jitter: expected a number > 0 with neighbourhood='vae+jitter', got "
                         f"{jitter!r} (use neighbourhood='vae' for none)")
    return float(jitter)


def _generator_device(generator: object) -> torch.device:
    return module_device_dtype(generator)[0]


def _check_generator_shape(generator: object, x: torch.Tensor) -> None:
    """Catch a channel/size mismatch with a VAE here, with a clear message, instead of as a
    convolution shape error deep inside the generator."""
    cfg = getattr(generator, "config", None)
    want = tuple(getattr(cfg, a, None) for a in ("channels", "height", "width"))
    want = want if None not in want else getattr(generator, "shape", None)
    if want is not None and tuple(x.shape[1:]) != tuple(want):
        raise ValueError(f"x: expected images of shape (K, {want[0]}, {want[1]}, {want[2]}) to "
                         f"match the generator, got {tuple(x.shape)}")
