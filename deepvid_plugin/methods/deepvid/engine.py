"""`DeepVID`: explain a classifier's decision on an instance with a distilled linear student.

Wang et al., "DeepVID: Deep Visual Interpretation and Diagnosis for Image Classifiers via
Knowledge Distillation", IEEE TVCG 25(6), 2019.

The explainer receives its parts (the generator; the model at call time) rather than building
them, captum-style. Neighbours are cached per instance id: they are sampled once (seeded) and
reused at every call, so the generator runs once per instance and a change of explanation across
epochs is a change of the model, never of the sample. Everything of the student's solver that
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

**Beyond digits: a student over regions** (``features``, ``neighbourhood="masks"``,
``baseline``, ``keep``, ``n_features``). On natural images both halves of the paper's recipe
break: a small VAE reconstructs nothing of photographs (every decoded neighbour is near the mean
image), and independent pixel noise of any size leaves a real model's prediction unchanged, so the
teacher's labels do not vary and a student over pixels learns nothing about where the model
looks (issue 18: maps at chance on a planted-patch task where Grad-CAM, IG and LIME find the
patch). What moves a model is switching whole regions off. So above 16 x 16 pixels
(``features="auto"``) the student reads one on/off value per region: SLIC superpixels
(:mod:`~deepvid_plugin.methods.deepvid.features`), each neighbour keeping every region with
probability ``keep`` and setting the others to ``baseline``
(:mod:`~deepvid_plugin.methods.deepvid.regions`); a region's weight is what keeping it adds to
the class's logit, drawn back onto its pixels. Up to 16 x 16 with a generator the paper's mode
runs exactly as before (tests/methods/deepvid/test_paper_mode.py).

Measured (throwaway scripts, CPU, on a loaded 2-core box; the task of
:mod:`deepvid_plugin.demo.photos`: a photo patch of 14% of the image pasted at a random position
into smoothed noise, label = the photo, inputs normalised per channel; correctly classified
held-out instances; 512 neighbours; deletion/insertion with 16 steps and baseline 0; "mass" =
share of |map| of the predicted class inside the patch (chance 0.14), "point" = the map peaks
inside it; "agreement" = held-out top-1 agreement). 32 x 32, a 4-convolution CNN (87.5% test
accuracy), the same 24 instances, keep 0.5::

    features          neighbourhood             mass   point  deletion  insertion  agreement
    superpixels (48)  masks, baseline blur      0.47   0.79   0.182     0.597      0.95
    superpixels (48)  masks, baseline zero      0.42   0.75   0.139     0.681      0.94
    superpixels (48)  masks, baseline mean      0.43   0.79   0.157     0.667      0.93
    superpixels (48)  masks, blur towards zero  0.45   0.79   0.147     0.648      0.94
    superpixels (64)  masks, baseline zero      0.39   0.79   0.149     0.660      0.96
    superpixels (48)  vae+masks r=0.5, blur     0.42   0.75   0.183     0.578      0.89
    superpixels (48)  vae+masks r=1.0, blur     0.35   0.67   0.229     0.540      0.77
    peers: Grad-CAM 0.53 / 0.83 / 0.175 / 0.582; LIME (48 SLIC superpixels, 1000 samples)
    0.29 / 0.75 / 0.133 / 0.657; IntegratedGradients 0.33 / 0.71 / 0.226 / 0.437;
    InputXGradient 0.39 / 0.83 / 0.249 / 0.425; random map 0.14 / 0.12 / 0.344 / 0.352

On the first 16 of them (keep 0.5, baseline blur) a grid of 8 x 8 patches (4 px) gave mass 0.33
and point 0.44 against 0.38 and 0.62 for 64 SLIC superpixels: a grid cell that straddles the
patch's edge mixes evidence with background. Superpixels, then; baseline ``"zero"``: the best
deletion and insertion (it is also the evidence's baseline, so the student models exactly the
intervention the evidence measures; for ImageNet-normalised inputs it is the mean colour), for
0.05 less mass than blur. The generator's variation on top of the masks (``"vae+masks"``) only
added noise the student cannot see (agreement 0.96 -> 0.89 -> 0.77), so the default neighbourhood
needs no generator (``DeepVID(None)``; ``"vae+masks"`` stays available).

**n_features** (one region per ~21 pixels, 16 to 64). 96 x 96, a strided 4-convolution CNN, 16
instances, baseline zero, keep 0.5: 48 regions mass 0.48, deletion 0.105, insertion 0.668,
agreement 0.96; 100 regions 0.43 / 0.095 / 0.701 / 0.90; 200 regions 0.33 / 0.094 / 0.714 / 0.89.
More regions sharpen deletion and insertion a little but cost mass and agreement (a linear student
over more features from the same 410 fitting rows), so the count stops at 64.

**keep** (0.7). The fixture CNNs of tests/methods/deepvid/test_photos.py, 16 instances at 32 px
and 10 at 96 px, mass / deletion / insertion / records that pass the trust rule::

    keep   32 px                        96 px
    0.5    0.42  0.178  0.832   7/16    0.33  0.317  0.783   6/10
    0.6    0.41  0.169  0.822   7/16    0.34  0.307  0.787   8/10
    0.7    0.41  0.179  0.841   9/16    0.35  0.305  0.790   9/10
    0.8    0.39  0.218  0.834  11/16    0.34  0.309  0.794   9/10

Keeping more regions makes the neighbours easier for a linear student (more of them pass the trust
rule) until the teacher hardly varies and deletion suffers (0.8); 0.7 keeps the map as it was and
the trust up. The region maps' evidence is scored against a random map *over the same regions*
(``faithfulness.evidence(segments=...)``): deleting random pixels scatters speckle that alone
destroys a photo model's prediction, a baseline of another kind. Side-by-side numbers with every
peer, at 32 and 224 px, are in ``benchmarks/RESULTS.md`` (faithfulness).

**Large images.** Neighbours over regions are composed chunk by chunk from the cached masks
(:class:`~deepvid_plugin.methods.deepvid.regions.Regions`), never all at once; chunks hold at most
2^22 input values (:mod:`~deepvid_plugin.core.batching`: 27 images at 3 x 224 x 224); the
student's cost grows with regions x classes, not pixels x classes; records keep the maps of the
teacher's top ``store_classes`` classes and the true class. The paper's pixel student works up to
64 pixels a side and says so beyond.

**Evidence.** After distilling, every record's ``fidelity`` gets the deletion/insertion evidence
of its contribution map against the model on the instance, next to a random map's
(:func:`~deepvid_plugin.core.faithfulness.evidence`), and the trust rule of
:mod:`~deepvid_plugin.methods.deepvid.fidelity` uses it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from deepvid_plugin.core import checks
from deepvid_plugin.core.batching import rows_per_chunk
from deepvid_plugin.core.content import content_key
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import check_outputs, check_transform, logits_of
from deepvid_plugin.core.seeds import instance_seed
from deepvid_plugin.methods.deepvid.distil import distil_pixels, distil_regions
from deepvid_plugin.methods.deepvid.generator import Generator
from deepvid_plugin.methods.deepvid.neighbours import sample_neighbours
from deepvid_plugin.methods.deepvid.options import (
    DEFAULT_BASELINE,
    DEFAULT_JITTER,
    DEFAULT_KEEP,
    DEFAULT_N_NEIGHBOURS,
    DEFAULT_STORE_CLASSES,
    FEATURES,
    NEIGHBOURHOODS,
    PAPER_MAX_PIXELS,
    PIXEL_NEIGHBOURHOODS,
    PIXELS_MAX_SIDE,
    check_jitter,
    check_pairing,
    default_n_features,
    effective_jitter,
)
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.methods.deepvid.regions import BASELINES, Regions, sample_regions
from deepvid_plugin.methods.deepvid.student import SolverState, prepare_solver

Model = Callable[[torch.Tensor], torch.Tensor]


class DeepVID:
    """Explain image classifiers with DeepVID.

    Args:
        generator: anything with ``encode``/``decode`` (see :class:`Generator`), usually a fitted
            :class:`~deepvid_plugin.explain.VAE`; ``None`` for region features without the
            generator's variation (``neighbourhood="masks"``, the default above 16 x 16).
        n_neighbours: neighbours per instance (>= 10), the reconstruction (pixels) or the
            instance itself (regions) included.
        radius: latent radius, a scalar or one value per latent dimension.
        temperature: distillation temperature T (> 0). Higher T transfers more of the teacher's
            "dark knowledge" about second choices.
        seed: seeds the neighbours (per instance id) and the hold-out split.
        holdout: fraction of neighbours kept for fidelity, never used for fitting.
        l2: relative L2 strength of the student; ``None`` picks it by held-out KL.
        batch_size: teacher/generator chunk size (at most; large images go in smaller chunks,
            see :mod:`~deepvid_plugin.core.batching`).
        n_shown: neighbours kept in each record for display (taken from the hold-out; at most
            64 pixels a side, larger ones are downsampled).
        refine_steps: LBFGS steps on the KL objective after the closed-form warm start.
        neighbourhood: with pixel features, ``"vae+jitter"`` (decoded neighbours plus pixel
            jitter) or ``"vae"`` (decoded neighbours only, the paper's); with region features,
            ``"masks"`` (regions switched off towards ``baseline``) or ``"vae+masks"`` (plus the
            generator's decoded variation). ``None``: ``"vae+jitter"`` for pixels, ``"masks"``
            for regions. See the module docstring for the measurements behind the defaults.
        jitter: std of the pixel jitter in the images' own units; ``None`` means
            :data:`DEFAULT_JITTER` (0.05, chosen for images in [0, 1]; scale it with your
            normalisation, e.g. about 0.2 for ImageNet-normalised inputs) for ``"vae+jitter"``
            and none otherwise.
        outputs: ``"logits"`` (default) or ``"probs"`` for a model that ends in a softmax
            (its log is distilled). With ``"logits"``, outputs that look like probabilities
            (every row in [0, 1] summing to 1, or every value in [0, 1]: a final sigmoid) are
            refused: distilling them as logits gives a near-flat teacher. ``"sigmoid"``
            (multi-label) is refused: the paper's student is a softmax over classes.
        features: what the student reads: ``"pixels"`` (the paper: a weight per pixel),
            ``"superpixels"`` (SLIC regions that follow the image's edges) or ``"grid"``
            (square patches); ``"auto"`` (default): pixels up to 16 x 16 when there is a
            generator, superpixels above.
        n_features: regions per image for ``"superpixels"``/``"grid"`` (about; SLIC adapts it
            to the image); ``None``: one per 21 pixels, between 16 and 64.
        baseline: what a switched-off region becomes: ``"zero"`` (default; 0 in your input
            units, the deletion evidence's baseline), ``"mean"``, ``"blur"`` or
            ``"reconstruction"`` (the generator's).
        keep: probability that a region stays on in a neighbour (0 < keep < 1).
        store_classes: records keep the weight maps of the teacher's top ``store_classes``
            classes and of the true class (every class when the model has no more); ``None``
            keeps every class.
        output_transform: a callable from the model's output to its ``(N, n_classes)`` logits;
            HuggingFace outputs, dicts with ``"logits"`` and tuples are recognised without it
            (:func:`~deepvid_plugin.core.outputs.logits_of`).

    The model must return logits (unnormalised scores) of shape ``(N, n_classes)``, or
    probabilities with ``outputs="probs"``. All settings, resolved for the images' size, go into
    every record's ``settings``.

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import DeepVID
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
        >>> (rec,) = DeepVID(None, n_neighbours=64).explain(model, torch.randn(1, 3, 32, 32))
        >>> rec.settings["features"], rec.weight_map(rec.predicted).shape
        ('superpixels', (32, 32))
    """

    def __init__(self, generator: Generator | None, n_neighbours: int = DEFAULT_N_NEIGHBOURS,
                 radius: Any = 0.5, temperature: float = 2.0, seed: int = 0, holdout: float = 0.2,
                 l2: float | None = None, batch_size: int = 512, n_shown: int = 32,
                 refine_steps: int = 10, neighbourhood: str | None = None,
                 jitter: float | None = None, outputs: str = "logits", *,
                 features: str = "auto", n_features: int | None = None,
                 baseline: str = DEFAULT_BASELINE, keep: float = DEFAULT_KEEP,
                 store_classes: int | None = DEFAULT_STORE_CLASSES,
                 output_transform: Callable[[Any], Any] | None = None):
        self.generator = None if generator is None else checks.generator(generator)
        self.n_neighbours = checks.integer("n_neighbours", n_neighbours, 10)
        self.radius = checks.radius(radius)
        self.temperature = checks.positive("temperature", temperature)
        self.seed = checks.integer("seed", seed, 0)
        self.holdout = checks.fraction("holdout", holdout, 0.05, 0.5)
        self.l2 = checks.optional_positive("l2", l2)
        self.batch_size = checks.integer("batch_size", batch_size, 1)
        self.n_shown = checks.integer("n_shown", n_shown, 0)
        self.refine_steps = checks.integer("refine_steps", refine_steps, 0)
        self.features = checks.choice("features", features, FEATURES)
        self.neighbourhood = None if neighbourhood is None else checks.choice(
            "neighbourhood", neighbourhood, NEIGHBOURHOODS)
        check_pairing(self.features, self.neighbourhood, self.generator)
        self.jitter = check_jitter(self.neighbourhood, jitter)
        self.outputs = _check_outputs(outputs)
        self.output_transform = check_transform("output_transform", output_transform)
        self.n_features = None if n_features is None else checks.integer("n_features",
                                                                         n_features, 2)
        self.baseline = checks.choice("baseline", baseline, BASELINES)
        if self.baseline == "reconstruction" and self.generator is None:
            raise ValueError("baseline: 'reconstruction' needs a generator, got generator=None "
                             "(pass a fitted VAE, or baseline='zero')")
        self.keep = checks.fraction("keep", keep, 0.05, 0.95)
        self.store_classes = None if store_classes is None else checks.integer(
            "store_classes", store_classes, 1)
        self._neighbours: dict[str, torch.Tensor] = {}  # instance id -> (M, C, H, W), on CPU
        self._regions: dict[str, Regions] = {}  # instance id -> its region neighbourhood
        self._content: dict[str, str] = {}  # instance id -> content key of its image
        self._solver: dict[str, SolverState] = {}  # instance id -> its student solver state

    # ---- public API ----------------------------------------------------------------------------
    def as_explainer(self, every_n_epochs: int = 1) -> Any:
        """This engine as a callback's explainer (kind ``deepvid``) on that schedule."""
        from deepvid_plugin.methods.deepvid.explainer import DeepVIDExplainer

        return DeepVIDExplainer(self, every_n_epochs=every_n_epochs)

    def settings(self, shape: Sequence[int] | None = None) -> dict[str, Any]:
        """The settings as given, or resolved for images of ``shape`` (C, H, W): what every
        record of such images carries."""
        out = {"method": "deepvid", "n_neighbours": self.n_neighbours,
               "radius": self.radius.tolist(), "temperature": self.temperature,
               "seed": self.seed, "holdout": self.holdout, "l2": self.l2,
               "refine_steps": self.refine_steps, "neighbourhood": self.neighbourhood,
               "jitter": self.jitter, "outputs": self.outputs, "features": self.features,
               "n_features": self.n_features, "baseline": self.baseline, "keep": self.keep,
               "store_classes": self.store_classes}
        if shape is None:
            return out
        features, neighbourhood = self._resolve(tuple(shape))
        out.update(features=features, neighbourhood=neighbourhood,
                   jitter=effective_jitter(neighbourhood, self.jitter))
        if features == "pixels":
            for key in ("n_features", "baseline", "keep"):
                out.pop(key)
        else:
            out["n_features"] = self.n_features or default_n_features(*shape[1:])
        return out

    def needs_generator(self, shape: Sequence[int]) -> bool:
        """Whether explaining images of ``shape`` (C, H, W) with these settings uses a
        generator (DeepVID's explainer fits a VAE only then)."""
        features, neighbourhood = self._resolve(tuple(shape), assume_generator=True)
        return (features == "pixels" or neighbourhood == "vae+masks"
                or self.baseline == "reconstruction")

    def neighbours(self, x: torch.Tensor, ids: Sequence[str]) -> torch.Tensor:
        """(K, M, C, H, W) cached neighbours of ``x``; sampled on first use of each id, and
        again when an id comes back with another image (a cache keyed by id alone would
        explain the new image on the old one's neighbours).

        With region features they are composed from the cached masks on every call: K * M
        full-size images (for 224-px images, prefer :meth:`explain`, which never holds them all).
        """
        x = checks.images("x", x).to("cpu", torch.float32)
        ids = checks.ids(ids, x.shape[0])
        features, neighbourhood = self._resolve(tuple(x.shape[1:]))
        if features != "pixels":
            return torch.stack([r.images(torch.arange(self.n_neighbours))
                                for r in self._region_cache(x, ids)])
        stale = self._stale(x, ids)
        missing = [i for i, iid in enumerate(ids) if iid not in self._neighbours or i in stale]
        if missing:
            with preserved_rng(), frozen_eval(self.generator):
                dev = _generator_device(self.generator)
                xs = x[missing].to(dev, torch.float32)
                new = sample_neighbours(self.generator, xs, [ids[i] for i in missing],
                                        self.n_neighbours, self.radius.to(dev), self.seed,
                                        self.batch_size,
                                        jitter=effective_jitter(neighbourhood, self.jitter))
            for j, i in enumerate(missing):
                self._neighbours[ids[i]] = new[j].detach().to("cpu", torch.float32)
                self._content[ids[i]] = stale.get(i) or content_key(x[i])
        return torch.stack([self._neighbours[iid] for iid in ids])

    def explain(self, model: Model, x: torch.Tensor, ids: Sequence[str] | None = None,
                labels: Sequence[int] | torch.Tensor | None = None,
                class_names: Sequence[str] | None = None, step: int = 0) -> list[ExplanationRecord]:
        """One :class:`ExplanationRecord` per instance of ``x`` (K, C, H, W).

        The model is run in eval mode under no_grad, in chunks of ``batch_size`` (fewer for
        large images), on its own device; every module's ``training`` flag and every RNG state
        are restored afterwards. Teacher forwards per instance: the instance and its
        ``n_neighbours`` neighbours (pixels) or its ``n_neighbours`` neighbours, the instance
        among them (regions), then the faithfulness evidence's deletion/insertion images (46
        at its default 12 steps).
        """
        step = checks.integer("step", step)  # 1.7 was stored as step 1
        x = checks.images("x", x).to("cpu", torch.float32)
        shape = tuple(x.shape[1:])
        features, neighbourhood = self._resolve(shape)
        if features == "pixels" or neighbourhood == "vae+masks" or self.baseline == \
                "reconstruction" and self.generator is not None:
            _check_generator_shape(self.generator, x)
        k = x.shape[0]
        ids = checks.ids(ids, k)
        labels_list = checks.labels(labels, k)
        settings = self.settings(shape)
        with preserved_rng():
            if features == "pixels":
                nb = self.neighbours(x, ids)  # (K, M, C, H, W)
                rows = torch.cat([x.unsqueeze(1).to(nb.dtype), nb], 1)  # (K, M + 1, ...)
                logits = self._teacher(model, rows)
            else:
                regions = self._region_cache(x, ids)
                logits = self._teacher_regions(model, regions)
            n_classes = logits.shape[-1]
            class_names = (checks.class_names(class_names, n_classes)
                           or [str(i) for i in range(n_classes)])
            labels_list = checks.labels(labels_list, k, n_classes)  # now the range is known
            common = dict(ids=ids, labels=labels_list, class_names=class_names, step=step,
                          model=model, settings=settings)
            if features == "pixels":
                return distil_pixels(self, x, nb, logits, **common)
            return distil_regions(self, x, regions, logits, **common)

    # ---- internals -----------------------------------------------------------------------------
    def _resolve(self, shape: tuple[int, ...], assume_generator: bool = False
                 ) -> tuple[str, str]:
        """(features, neighbourhood) for images of ``shape`` (C, H, W)."""
        _, h, w = shape
        has_generator = assume_generator or self.generator is not None
        features = self.features
        if features == "auto":
            small = h * w <= PAPER_MAX_PIXELS and has_generator
            features = "pixels" if small or self.neighbourhood in PIXEL_NEIGHBOURHOODS \
                else "superpixels"
        if features == "pixels":
            if max(h, w) > PIXELS_MAX_SIDE:
                raise ValueError(
                    f"features: 'pixels' keeps a weight per pixel and class and works up to "
                    f"{PIXELS_MAX_SIDE} pixels a side, got images of {h}x{w}: use "
                    f"features='superpixels' (the default above 16x16) or 'grid'")
            if not has_generator:
                raise ValueError("generator: features='pixels' samples neighbours from a "
                                 "generator, got None: pass a fitted VAE, or use "
                                 "features='superpixels'")
            return features, self.neighbourhood or "vae+jitter"
        return features, self.neighbourhood or "masks"

    def _split(self, ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fit / hold-out neighbour indices. Row 0 (the reconstruction, or with regions the
        instance itself) is always fitted on.

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
            self._solver[ids[i]] = prepare_solver(fit_x[i : i + 1], l2=self.l2,
                                                  generator=self._val_generator())
        return SolverState.concat([self._solver[iid] for iid in ids])

    def _val_generator(self) -> torch.Generator:
        """The generator of the student's L2 validation split (the same for every instance)."""
        return torch.Generator().manual_seed(instance_seed(self.seed, "\0val"))

    def _teacher(self, model: Model, rows: torch.Tensor) -> torch.Tensor:
        """(K, R, n_classes) logits of each instance's ``rows`` (K, R, C, H, W), on the model's
        device, as float32 CPU."""
        return torch.stack([self._logits(model, lambda idx, inst=inst: inst[idx], rows.shape[1],
                                         inst[0].numel()) for inst in rows])

    def _teacher_regions(self, model: Model, regions: Sequence[Regions]) -> torch.Tensor:
        """(K, M, n_classes) logits of every instance's neighbours, composed chunk by chunk so
        memory holds one chunk of images, never all of them."""
        return torch.stack([self._logits(model, r.images, self.n_neighbours, r.image.numel())
                            for r in regions])

    def _logits(self, model: Model, rows: Callable[[torch.Tensor], torch.Tensor], n: int,
                numel: int) -> torch.Tensor:
        """(n, n_classes) logits of one instance's ``rows(indices)``, in near-equal chunks of
        at most ``batch_size`` (fewer for large images), never mixed with another instance's: a
        model's output for an image can differ in the last bits with the size of the batch it
        was in (measured on CPU: ResNet-18 logits 3e-7 apart for a batch of 1 and of 600), so
        an instance's teacher labels, and so its student, must not depend on which instances
        share its batches or how many there are."""
        size = rows_per_chunk(self.batch_size, numel)
        out = []
        with frozen_eval(model):
            device, dtype = module_device_dtype(model)
            for idx in torch.arange(n).tensor_split(-(-n // size)):
                imgs = rows(idx)
                out.append(_run(model, imgs.to(device, dtype), imgs.shape[0], self.outputs,
                                self.output_transform).float().cpu())
        return torch.cat(out)

    def _stale(self, x: torch.Tensor, ids: Sequence[str]) -> dict[int, str]:
        """{index: content key} of the ids cached with another image than ``x`` has now
        (warned about: their neighbourhoods are sampled anew)."""
        stale = {}
        for i, iid in enumerate(ids):
            if iid in self._content:
                key = content_key(x[i])
                if key != self._content[iid]:
                    stale[i] = key
        if stale:
            warnings.warn(f"ids: {[ids[i] for i in stale]} were explained before with other "
                          f"images; their neighbours are sampled anew (give distinct instances "
                          f"distinct ids to keep their timelines apart)", stacklevel=4)
        return stale

    def _region_cache(self, x: torch.Tensor, ids: Sequence[str]) -> list[Regions]:
        """Each instance's region neighbourhood, built on first use of its id (and again when
        the id comes back with another image)."""
        stale = self._stale(x, ids)
        missing = [i for i, iid in enumerate(ids) if iid not in self._regions or i in stale]
        if missing:
            _, neighbourhood = self._resolve(tuple(x.shape[1:]))
            use_generator = neighbourhood == "vae+masks" or self.baseline == "reconstruction"
            gen = self.generator if use_generator else None
            with preserved_rng(), frozen_eval(gen):
                new = sample_regions(
                    x[missing], [ids[i] for i in missing], self.n_neighbours, self.seed,
                    features="grid" if self.features == "grid" else "superpixels",
                    n_features=self.n_features or default_n_features(*x.shape[2:]),
                    baseline=self.baseline, keep=self.keep, generator=gen,
                    radius=self.radius if neighbourhood == "vae+masks" else None,
                    batch_size=self.batch_size)
            for j, i in enumerate(missing):
                self._regions[ids[i]] = new[j]
                self._content[ids[i]] = stale.get(i) or content_key(x[i])
        return [self._regions[iid] for iid in ids]


def _check_outputs(outputs: Any) -> str:
    if outputs == "sigmoid":
        raise ValueError("outputs: DeepVID's student is a softmax over classes (the paper's "
                         "distillation), so it cannot mimic independent sigmoid outputs; got "
                         "'sigmoid'. Explain a multi-label model with GradCAM(outputs='sigmoid') "
                         "or Attribution(..., outputs='sigmoid')")
    return check_outputs(outputs, ("logits", "probs"))


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


__all__ = ["DEFAULT_JITTER", "DEFAULT_N_NEIGHBOURS", "DeepVID", "default_n_features"]
