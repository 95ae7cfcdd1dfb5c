"""`DeepVIDLightningCallback`: explanations (DeepVID, Grad-CAM, ...) during a Lightning run.

::

    from deepvid_plugin.callbacks.lightning import DeepVIDLightningCallback

    trainer = L.Trainer(logger=[TensorBoardLogger("runs"), MLFlowLogger(...)],
                        callbacks=[DeepVIDLightningCallback(x_test[:16], labels=y_test[:16],
                                                            train_data=x_train,
                                                            explainers=[GradCAM()])])

It writes through every ``TensorBoardLogger`` and ``MLFlowLogger`` in ``trainer.loggers`` (their
public ``experiment``/``run_id``/``log_dir``), plus any ``sinks=`` given. Only global rank zero
writes. ``state_dict``/``load_state_dict`` carry every explainer's last logged epoch and state
(DeepVID's fitted VAE), so a run resumed from a checkpoint continues the same timelines with the
same neighbours and logs every epoch of every kind exactly once.

DDP: rank zero computes while the other ranks wait
---------------------------------------------------
The alternative, sharding the tracked instances across ranks and gathering the records on rank
zero, was measured (``benchmarks/bench_callback.py``, section ``ddp``: 2 gloo processes on CPU,
16 digits instances x 512 neighbours) and rejected:

* it was not faster: rank zero alone took 1.31 s per epoch, shard-and-gather 1.43 s (2 ranks,
  1 thread each, on the shared 2-core development machine): half the instances per rank saves
  less than the gather of pickled records and the second rank's start-up cost; on GPUs the
  explanation is a few percent of an epoch either way;
* it changes the answer: the students of all instances are refined by one joint LBFGS (a sum of
  independent terms, but one shared line search), so a record would depend on which other
  instances share its rank, and a 2-process run would no longer log what a 1-process run logs;
* it needs every rank to hold the generator and to fit the VAE, and a gather of pickled records.

So rank zero explains and writes; every rank then meets at ``trainer.strategy.barrier()`` (the
other ranks would block in the next gradient all-reduce anyway; the barrier makes the wait
explicit and keeps a failing rank zero from leaving the others in a half-finished epoch). The
schedule (which epochs are due) is decided identically on every rank, so the barriers match.
"""

from __future__ import annotations

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
from deepvid_plugin.callbacks.targets import TargetArtifacts, check_sinks
from deepvid_plugin.core.sink import Sink
from deepvid_plugin.methods.deepvid.explainer import DEFAULT_VAE_EPOCHS, DEFAULTS


class DeepVIDLightningCallback(pl.Callback):
    """Run explainers on ``instances`` at the end of training epochs (``pl_module`` is the model).

    Arguments are those of :class:`~deepvid_plugin.callbacks.DeepVIDCallback` without ``model``
    and the write targets: records go to the trainer's ``TensorBoardLogger``/``MLFlowLogger``
    loggers and to ``sinks``. The step is ``trainer.current_epoch``; each explainer keeps its
    own ``every_n_epochs``.
    """

    def __init__(self, instances: Any, *, ids: Sequence[str] | None = None, labels: Any = None,
                 class_names: Sequence[str] | None = None,
                 explainers: Sequence[Any] | None = None, generator: Any = None,
                 train_data: Any = None, vae_epochs: int = DEFAULT_VAE_EPOCHS,
                 every_n_epochs: int = 1, n_neighbours: int = DEFAULTS["n_neighbours"],
                 radius: Any = DEFAULTS["radius"], temperature: float = DEFAULTS["temperature"],
                 seed: int = DEFAULTS["seed"], batch_size: int = DEFAULTS["batch_size"],
                 sinks: Sequence[Sink] | None = None,
                 on_error: str = "warn", progress: bool = True, alerts: Any = True,
                 on_alert: Callable[[dict[str, Any]], Any] | None = None):
        super().__init__()
        self.explanations = Explanations(
            instances, ids=ids, labels=labels, class_names=class_names, explainers=explainers,
            generator=generator, train_data=train_data, vae_epochs=vae_epochs,
            every_n_epochs=every_n_epochs, n_neighbours=n_neighbours, radius=radius,
            temperature=temperature, seed=seed, batch_size=batch_size, on_error=on_error,
            progress=progress, alerts=alerts, on_alert=on_alert)
        check_sinks(sinks)
        self._extra_sinks = list(sinks or ())
        self.sinks: dict[str, Sink] = {}
        self._save_dirs: list[str] = []
        self._mlflow_targets: list[tuple[Any, str]] = []
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
        if not supported and not self._extra_sinks:  # same answer on every rank: no deadlock
            names = [type(lg).__name__ for lg in trainer.loggers] or ["none"]
            raise ValueError("DeepVIDLightningCallback: expected a TensorBoardLogger or "
                             "MLFlowLogger in Trainer(logger=...), or sinks=[...]; got loggers "
                             f"{', '.join(names)}")
        self.sinks, self._save_dirs, self._mlflow_targets = {}, [], []
        if not trainer.is_global_zero:
            return  # loggers are dummies there; only rank zero writes
        from deepvid_plugin.mlflow.sink import MLflowSink
        from deepvid_plugin.tensorboard.summary import TensorBoardSink

        for i, lg in enumerate(supported):
            if isinstance(lg, TensorBoardLogger):
                self.sinks[f"tensorboard[{i}]"] = TensorBoardSink(lg.experiment)
                os.makedirs(lg.log_dir, exist_ok=True)
                self._save_dirs.append(lg.log_dir)
            else:
                self.sinks[f"mlflow[{i}]"] = MLflowSink(logger=lg)
                client, run_id = lg.experiment, lg.run_id
                if run_id is not None:
                    self._mlflow_targets.append((client, run_id))
        for i, s in enumerate(self._extra_sinks):
            self.sinks[f"{type(s).__name__}[{i}]"] = s

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Prepare every explainer (fit or reload the VAE) before the first epoch, on rank zero,
        # where the model lives.
        try:
            if trainer.is_global_zero:
                self.explanations.prepare(pl_module, pl_module.device, self.artifacts)
        finally:
            trainer.strategy.barrier("deepvid_prepare")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        due = self.explanations.due(epoch)
        if not due:
            return
        try:
            if trainer.is_global_zero:
                self.last_records = self.explanations.run(
                    pl_module, epoch, self.sinks, pl_module.device, self.artifacts, due)
        finally:
            # Every rank records the epoch as done, so the schedule stays identical everywhere.
            self.explanations.mark_done(epoch, due)
            trainer.strategy.barrier("deepvid_epoch")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.sinks:
            self.explanations.close(self.sinks)
            self.sinks = {}

    # ---- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.explanations.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.explanations.load_state_dict(state_dict)
