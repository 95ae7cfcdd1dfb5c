"""DeepVID as an explainer of kind ``deepvid`` (:mod:`deepvid_plugin.core.explainer`).

It wraps a :class:`~deepvid_plugin.explain.DeepVID` engine and owns everything DeepVID needs
before its first explanation: a generator, when the engine uses one for the instances' size
(the paper's pixel mode up to 16 x 16; above, the default region student switches regions off
and needs none, so ``train_data`` fits nothing there). That is the one given, one restored from a checkpoint
(:meth:`DeepVIDExplainer.load_state_dict`), a VAE an earlier run saved next to the logs (found
through ``context.artifacts``), or a VAE fitted in :meth:`~DeepVIDExplainer.prepare` on
``train_data`` and then saved through ``context.artifacts`` (next to the TensorBoard logs and as
the MLflow artifact ``deepvid-generator/deepvid-vae.pt``). The fitted VAE also travels in
:meth:`~DeepVIDExplainer.state_dict`, so a resumed run gets the same neighbours.

The explainer writes no file itself: the callback's artifact store does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from deepvid_plugin.core import checks
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.methods.deepvid.engine import (
    DEFAULT_N_NEIGHBOURS,
    DeepVID,
    _check_generator_shape,
    _run,
)
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.methods.deepvid.vae import VAE, VAEConfig

logger = logging.getLogger("deepvid_plugin.explain")

#: file name of a VAE fitted by the explainer, next to the TensorBoard logs.
VAE_FILE = "deepvid-vae.pt"
#: MLflow artifact folder of the same file (outside ``deepvid/``, the records' layout).
VAE_ARTIFACT_DIR = "deepvid-generator"
_STATE_VERSION = 1

#: the DeepVID settings this adapter takes itself, and their defaults (the engine's).
DEFAULTS = {"n_neighbours": DEFAULT_N_NEIGHBOURS, "radius": 0.5, "temperature": 2.0, "seed": 0,
            "batch_size": 512}
DEFAULT_VAE_EPOCHS = 30


class DeepVIDExplainer:
    """DeepVID explanations of the tracked instances every ``every_n_epochs`` epochs.

    Exactly one of:

    - ``engine``: a configured :class:`DeepVID` (every engine setting available; the DeepVID
      settings below must then be left unset);
    - ``generator``: a fitted generator (e.g. a :class:`~deepvid_plugin.explain.VAE`);
    - ``train_data``: a ``(N, C, H, W)`` tensor or a DataLoader to fit the built-in VAE on, once,
      in :meth:`prepare` (``vae_epochs`` epochs, seeded by ``seed``).

    ``n_neighbours``, ``radius``, ``temperature``, ``seed``, ``batch_size``: DeepVID settings
    for a ``generator`` or ``train_data`` (None: 512, 0.5, 2.0, 0, 512).

    Attributes:
        generator_source: ``"given"``, ``"checkpoint"``, ``"logdir"`` (a VAE an earlier run
            saved), ``"fitted"``, or None before :meth:`prepare` and when the engine needs no
            generator for the instances' size (region features, the default above 16 x 16).
        fitted_vae: the VAE this explainer fitted or restored (None for a given generator).

    Example::

        >>> import torch
        >>> from deepvid_plugin.explain import DeepVIDExplainer, ExplainContext, PixelGenerator
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> e = DeepVIDExplainer(generator=PixelGenerator((1, 8, 8)), n_neighbours=32)
        >>> e.prepare(ExplainContext(x=torch.rand(2, 1, 8, 8), ids=("a", "b")))
        >>> [r.instance_id for r in e.explain(model, step=0)]
        ['a', 'b']
    """

    kind = "deepvid"

    def __init__(self, engine: DeepVID | None = None, *, generator: Any = None,
                 train_data: Any = None, vae_epochs: int = DEFAULT_VAE_EPOCHS,
                 every_n_epochs: int = 1,
                 n_neighbours: int | None = None, radius: Any = None,
                 temperature: float | None = None, seed: int | None = None,
                 batch_size: int | None = None, progress: bool = True):
        given = [n for n, v in (("engine", engine), ("generator", generator),
                                ("train_data", train_data)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"generator: expected a fitted generator (e.g. a VAE), "
                             f"train_data=... to fit a VAE on, or a DeepVID engine: exactly one "
                             f"of them, got {', '.join(given) if given else 'neither'}")
        settings = {"n_neighbours": n_neighbours, "radius": radius, "temperature": temperature,
                    "seed": seed, "batch_size": batch_size}
        if engine is not None:
            if not isinstance(engine, DeepVID):
                raise TypeError(f"engine: expected a deepvid_plugin.explain.DeepVID, got "
                                f"{type(engine).__name__}")
            overlap = sorted(n for n, v in settings.items() if v is not None)
            if overlap:
                raise ValueError(f"{overlap[0]}: expected it unset with engine=... (set it on the "
                                 f"DeepVID engine), got {settings[overlap[0]]!r}")
        values = {n: DEFAULTS[n] if v is None else v for n, v in settings.items()}
        self.n_neighbours = checks.integer("n_neighbours", values["n_neighbours"], 10)
        self.radius = values["radius"]
        checks.radius(self.radius)
        self.temperature = checks.positive("temperature", values["temperature"])
        self.seed = checks.integer("seed", values["seed"], 0)
        self.batch_size = checks.integer("batch_size", values["batch_size"], 1)
        self.vae_epochs = checks.integer("vae_epochs", vae_epochs, 1)
        self.every_n_epochs = checks.integer("every_n_epochs", every_n_epochs, 1)
        if generator is not None:
            checks.generator(generator)
        if train_data is not None and not isinstance(train_data, torch.Tensor) \
                and not hasattr(train_data, "__iter__"):
            raise TypeError(f"train_data: expected a (N, C, H, W) tensor or a DataLoader, got "
                            f"{type(train_data).__name__}")
        self.progress = bool(progress)
        self.train_data = train_data
        self.engine: DeepVID | None = engine
        self.generator = engine.generator if engine is not None else generator
        self.generator_source: str | None = "given" if self.generator is not None else None
        self.fitted_vae: VAE | None = None
        self._context: ExplainContext | None = None

    # ---- protocol --------------------------------------------------------------------------
    def check(self, x: torch.Tensor) -> None:
        """Fail now if the built-in VAE cannot model these instances or ``train_data`` does not
        match them (rather than at the first explained epoch)."""
        if self.train_data is None or not self._engine_for_settings().needs_generator(
                tuple(x.shape[1:])):
            return
        c, h, w = x.shape[1:]
        try:
            VAEConfig(c, h, w)  # the default VAE handles 1 or 3 channels, 8 pixels and more
        except ValueError as e:
            raise ValueError(f"train_data: the built-in VAE cannot model instances of shape "
                             f"{(c, h, w)} ({e}); pass generator=... instead") from e
        data = self.train_data
        if isinstance(data, torch.Tensor) and (data.dim() != 4
                                               or tuple(data.shape[1:]) != (c, h, w)):
            raise ValueError(f"train_data: expected images of shape (N, {c}, {h}, {w}) like the "
                             f"instances, got {tuple(data.shape)}")

    @property
    def outputs(self) -> str:
        """What the model's outputs mean to DeepVID (the engine's; ``"logits"`` by default)."""
        return self.engine.outputs if self.engine is not None else "logits"

    def check_model(self, model: torch.nn.Module, x: torch.Tensor) -> None:
        """Fail now, before any VAE is fitted: a given generator of another shape, or a model
        whose outputs DeepVID cannot distil (probabilities, a final sigmoid, no logits)."""
        if self.generator is not None:
            _check_generator_shape(self.generator, x)
        transform = self.engine.output_transform if self.engine is not None else None
        device, dtype = module_device_dtype(model)
        with preserved_rng(), frozen_eval(model):
            _run(model, x.to(device, dtype), x.shape[0], self.outputs, transform)

    def prepare(self, context: ExplainContext) -> None:
        """Obtain the generator (see the module docstring); a no-op once there is one."""
        self._context = context
        if self.fitted_vae is not None and self.generator_source == "checkpoint":
            # restored from a checkpoint or, under DDP, from rank zero's state: on the CPU until
            # here; decode where the model lives, as a VAE fitted here does
            self.fitted_vae.to(context.device)
        shape = tuple(context.x.shape[1:])
        if self.generator is None and self._engine_for_settings().needs_generator(shape):
            vae = self._obtain_vae(context)
            self.generator = self.fitted_vae = vae
            if self.generator_source == "fitted":
                context.artifacts.save(VAE_FILE, vae.save, VAE_ARTIFACT_DIR)
        if self.engine is None or self.engine.generator is not self.generator:
            self.engine = self._engine_for_settings(self.generator)

    def _engine_for_settings(self, generator: Any = None) -> DeepVID:
        """The given engine, or one built from this explainer's settings."""
        if self.engine is not None and generator is None:
            return self.engine
        return DeepVID(generator, n_neighbours=self.n_neighbours, radius=self.radius,
                       temperature=self.temperature, seed=self.seed,
                       batch_size=self.batch_size)

    def explain(self, model: torch.nn.Module, step: int) -> list[ExplanationRecord]:
        ctx = self._context
        if ctx is None or self.engine is None:
            raise RuntimeError("DeepVIDExplainer.explain: call prepare(context) first")
        return self.engine.explain(model, ctx.x, ids=list(ctx.ids), labels=ctx.labels,
                                   class_names=ctx.class_names, step=step)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loads with ``torch.load(weights_only=True)``)."""
        state: dict[str, Any] = {"version": _STATE_VERSION}
        if self.fitted_vae is not None:
            # The VAE travels with the checkpoint: a resumed run gets the same neighbours.
            state["vae"] = {"config": dict(vars(self.fitted_vae.config)),
                            "state_dict": {k: v.detach().cpu().clone()
                                           for k, v in self.fitted_vae.state_dict().items()}}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a dict from state_dict(), got "
                            f"{type(state).__name__}")
        if int(state.get("version", 1)) > _STATE_VERSION:
            raise ValueError(f"state: deepvid explainer state version {state['version']} is "
                             f"newer than this deepvid-plugin reads ({_STATE_VERSION}); upgrade "
                             f"deepvid-plugin")
        vae_state = state.get("vae")
        if vae_state is not None and self.generator_source != "given":
            with preserved_rng():  # building the modules draws initial weights
                vae = VAE(**vae_state["config"])
            vae.load_state_dict(vae_state["state_dict"])
            vae.eval()
            self.generator = self.fitted_vae = vae
            self.generator_source = "checkpoint"

    # ---- the VAE -----------------------------------------------------------------------------
    def _obtain_vae(self, context: ExplainContext) -> VAE:
        c, h, w = context.x.shape[1:]
        device = context.device
        path = context.artifacts.find(VAE_FILE)
        if path is not None:
            with preserved_rng():  # building the modules draws initial weights
                vae = VAE.load(path)
            if (vae.config.channels, vae.config.height, vae.config.width) == (c, h, w):
                logger.info("deepvid: reusing the VAE saved at %s", path)
                self.generator_source = "logdir"
                return vae.to(device)
            logger.warning("deepvid: ignoring %s: it models %s images, not %s", path,
                           (vae.config.channels, vae.config.height, vae.config.width), (c, h, w))
        with preserved_rng():
            torch.manual_seed(self.seed)  # a seeded init: the same VAE on every rank and rerun
            vae = VAE(c, h, w).to(device)
            with torch.enable_grad():
                report = vae.fit(self.train_data, epochs=self.vae_epochs, seed=self.seed,
                                 progress=self.progress and context.progress)
        logger.info("deepvid: %s", report)
        self.generator_source = "fitted"
        return vae
