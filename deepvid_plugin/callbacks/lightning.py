"""`DeepVIDLightningCallback`: explanations (DeepVID, Grad-CAM, ...) during a Lightning run.

::

    from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback

    trainer = L.Trainer(logger=[TensorBoardLogger("runs"), MLFlowLogger(...)],
                        callbacks=[DeepVIDLightningCallback(x_test[:16], labels=y_test[:16],
                                                            train_data=x_train,
                                                            explainers=[GradCAM()])])

It writes through every ``TensorBoardLogger`` and ``MLFlowLogger`` in ``trainer.loggers`` (their
public ``experiment``/``run_id``/``log_dir``), plus any ``sinks=`` given; with neither (a CSV or
W&B logger only, or none) it writes TensorBoard files to its own ``logdir`` (default
``<trainer.default_root_dir>/deepvid``) and says so. Only global rank zero writes.

Lightning hands the callback its module at ``setup``: the early check (one forward of the
tracked instances: output, labels, ``class_names``, every explainer's layer and generator) runs
there, before ``on_fit_start`` fits anything. ``forward_fn=`` runs a LightningModule that has no
``forward`` (``lambda module, x: module.net(x)``); ``output_transform=`` takes its output to the
logits. ``state_dict``/``load_state_dict`` carry every explainer's last logged epoch and state
(DeepVID's fitted VAE), so a run resumed from a checkpoint continues the same timelines with the
same neighbours and logs every epoch of every kind exactly once.

DDP: every rank explains its share, rank zero writes
----------------------------------------------------
Under a DDP strategy (``strategy="ddp"``, ``"ddp_spawn"``, ...) every rank runs the explainers
on its own device and the cost divides over the ranks: per-instance kinds (DeepVID, Grad-CAM,
CAM agreement) split the tracked instances, Network Dissection its probe images and Summit its
per-class images (:mod:`deepvid_plugin.callbacks.distributed`). Rank zero gathers the records
and alone writes (the loggers of other ranks are dummies anyway). A VAE fitted from
``train_data`` is fitted once, on rank zero, and broadcast. Every instance is computed on its
own, so any number of ranks logs exactly what one process logs (``tests/callbacks/test_ddp.py``
checks 2 Lightning ranks against 1; ``test_sharded.py`` every kind in a plain loop). A failure
on one rank, rank zero's writing included, is seen by every rank (warned about, or raised with
``on_error='raise'``), so none is left waiting in a collective. How the cost divides, measured:
``docs/distributed.md`` and ``benchmarks/RESULTS.md`` (DDP scale-out).

The model must be replicated (DDP): strategies that shard the parameters (FSDP, DeepSpeed
stage 3) need every rank in every forward pass, which sharded explanations cannot give.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger
except ImportError as e:  # optional dependency: say how to get it
    raise ImportError("DeepVIDLightningCallback needs Lightning: "
                      "pip install 'deepvid-plugin[lightning]'") from e

from deepvid_plugin.callbacks.explanations import Explanations
from deepvid_plugin.callbacks.targets import TargetArtifacts, check_sinks, check_writable_dir
from deepvid_plugin.core.collective import Group
from deepvid_plugin.core.outputs import ModelView, check_transform
from deepvid_plugin.core.sink import Sink
from deepvid_plugin.methods.deepvid.explainer import DEFAULT_VAE_EPOCHS, DEFAULTS

logger = logging.getLogger("deepvid_plugin.callbacks")


class DeepVIDLightningCallback(pl.Callback):
    """Run explainers on ``instances`` at the end of training epochs (``pl_module`` is the model).

    Arguments are those of :class:`~deepvid_plugin.callbacks.DeepVIDCallback` without ``model``
    and the write targets: records go to the trainer's ``TensorBoardLogger``/``MLFlowLogger``
    loggers and to ``sinks``, or, with none of them, to ``logdir`` (default
    ``<trainer.default_root_dir>/deepvid``). The step is ``trainer.current_epoch`` (plus
    ``step_offset``); each
    explainer keeps its own ``every_n_epochs``.

    Example::

        >>> from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback
        >>> from deepvid_plugin.explain import GradCAM
        >>> import torch
        >>> cb = DeepVIDLightningCallback(torch.rand(4, 3, 32, 32), explainers=[GradCAM()],
        ...                               forward_fn=lambda module, x: module.net(x))
    """

    def __init__(self, instances: Any, *, ids: Sequence[str] | None = None, labels: Any = None,
                 class_names: Sequence[str] | None = None,
                 explainers: Sequence[Any] | None = None, generator: Any = None,
                 train_data: Any = None, vae_epochs: int = DEFAULT_VAE_EPOCHS,
                 every_n_epochs: int = 1, n_neighbours: int = DEFAULTS["n_neighbours"],
                 radius: Any = DEFAULTS["radius"], temperature: float = DEFAULTS["temperature"],
                 seed: int = DEFAULTS["seed"], batch_size: int = DEFAULTS["batch_size"],
                 sinks: Sequence[Sink] | None = None,
                 on_error: str = "warn", progress: bool = True, logdir: Any = None,
                 output_transform: Any = None, forward_fn: Any = None,
                 step_offset: int = 0, alerts: Any = True,
                 on_alert: Callable[[dict[str, Any]], Any] | None = None):
        super().__init__()
        self.explanations = Explanations(
            instances, ids=ids, labels=labels, class_names=class_names, explainers=explainers,
            generator=generator, train_data=train_data, vae_epochs=vae_epochs,
            every_n_epochs=every_n_epochs, n_neighbours=n_neighbours, radius=radius,
            temperature=temperature, seed=seed, batch_size=batch_size, on_error=on_error,
            progress=progress, step_offset=step_offset, alerts=alerts, on_alert=on_alert)
        check_sinks(sinks)
        self.output_transform = check_transform("output_transform", output_transform)
        self.forward_fn = check_transform("forward_fn", forward_fn)
        if logdir is not None and not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(f"logdir: expected None or a directory path, got "
                            f"{type(logdir).__name__}")
        self.logdir = None if logdir is None else os.fspath(logdir)
        self._extra_sinks = list(sinks or ())
        self._explained: Any = None
        self.sinks: dict[str, Sink] = {}
        self._save_dirs: list[str] = []
        self._mlflow_targets: list[tuple[str, Any]] = []  # (sink name, MLflowSink)
        self.last_records: list[Any] = []

    @property
    def state_key(self) -> str:
        # Two DeepVID callbacks tracking different instances keep separate checkpoint states.
        return self._generate_state_key(ids=tuple(self.explanations.ids))

    @property
    def failures(self) -> dict[str, int]:
        return dict(self.explanations.policy.failures)

    @property
    def artifacts(self) -> TargetArtifacts:
        """Where explainers keep files: the TensorBoard log dirs and the MLflow runs."""
        return TargetArtifacts(self._save_dirs, self._mlflow_targets, self.explanations.policy)

    # ---- hooks --------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        supported = [lg for lg in trainer.loggers if isinstance(lg, (TensorBoardLogger,
                                                                     MLFlowLogger))]
        self._explained = explained(pl_module, self.forward_fn, self.output_transform)
        # the early check, on every rank (same answer everywhere: no rank waits for another)
        self.explanations.check_model(self._explained)
        self.sinks, self._save_dirs, self._mlflow_targets = {}, [], []
        # Under DDP every rank explains its share (Group.current(): None in one process).
        self.explanations.group = Group.current() if trainer.world_size > 1 else None
        if not trainer.is_global_zero:
            return  # loggers are dummies there; only rank zero writes
        from deepvid_plugin.mlflow.sink import MLflowSink
        from deepvid_plugin.tensorboard.summary import TensorBoardSink

        if not supported and not self._extra_sinks:
            # a CSV or W&B logger only (or none): our own TensorBoard logdir, said out loud
            names = [type(lg).__name__ for lg in trainer.loggers] or ["none"]
            directory = check_writable_dir("logdir", self.logdir or os.path.join(
                trainer.default_root_dir, "deepvid"))
            logger.warning("deepvid: no TensorBoardLogger or MLFlowLogger (loggers: %s); writing "
                           "explanations to %s (tensorboard --logdir %s)", ", ".join(names),
                           directory, directory)
            self.sinks["tensorboard"] = TensorBoardSink(directory)
            self._save_dirs.append(directory)

        for i, lg in enumerate(supported):
            if isinstance(lg, TensorBoardLogger):
                self.sinks[f"tensorboard[{i}]"] = TensorBoardSink(lg.experiment)
                os.makedirs(lg.log_dir, exist_ok=True)
                self._save_dirs.append(lg.log_dir)
            else:
                sink = self.sinks[f"mlflow[{i}]"] = MLflowSink(logger=lg)
                self._mlflow_targets.append((f"mlflow[{i}]", sink))
        for i, s in enumerate(self._extra_sinks):
            self.sinks[f"{type(s).__name__}[{i}]"] = s

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Prepare every explainer (fit or reload the VAE) before the first epoch, on every rank
        # (rank zero first; the others load its state, see callbacks/distributed.py).
        self.explanations.prepare(self._model(pl_module), pl_module.device, self.artifacts)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        due = self.explanations.due(epoch)  # the same on every rank: the schedules never diverge
        if not due:
            return
        self.last_records = self.explanations.run(self._model(pl_module), epoch, self.sinks,
                                                  pl_module.device, self.artifacts, due)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.sinks:
            self.explanations.close(self.sinks)
            self.sinks = {}

    def _model(self, pl_module: pl.LightningModule) -> Any:
        if self._explained is None or getattr(self._explained, "wrapped", self._explained) \
                is not pl_module:
            self._explained = explained(pl_module, self.forward_fn, self.output_transform)
        return self._explained

    # ---- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.explanations.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.explanations.load_state_dict(state_dict)


def explained(module: Any, forward_fn: Any, output_transform: Any) -> Any:
    """What the explainers run: the module, or a view of it through ``forward_fn`` and
    ``output_transform`` (same submodules, same names)."""
    if forward_fn is None and output_transform is None:
        return module
    return ModelView(module, forward_fn=forward_fn, output_transform=output_transform)
