"""`DeepVIDCallback`: explain a fixed set of instances every N epochs of a plain PyTorch loop.

::

    from deepvid_plugin.callbacks import DeepVIDCallback
    from deepvid_plugin.explain import GradCAM

    with DeepVIDCallback(model, x_test[:16], labels=y_test[:16], train_data=x_train,
                         explainers=[GradCAM()], logdir="runs/exp1", mlflow=True) as cb:
        for epoch in range(epochs):
            train_one_epoch(model, ...)
            cb.on_epoch_end(epoch)

*What* is explained (the instances and a list of explainers, one per kind: see
:mod:`deepvid_plugin.core.explainer`) lives in :class:`~.explanations.Explanations`, shared with
the Lightning callback; *where* it goes is a list of sinks (ignite-style). The DeepVID keyword arguments
(``generator``/``train_data`` and DeepVID's settings) are a shortcut that builds a
:class:`~deepvid_plugin.methods.deepvid.explainer.DeepVIDExplainer`.

The callback must never change the training it watches. Every explainer is prepared and run
inside one guard (:func:`untouched`) that restores every module's ``training`` flag, grad mode and
the python/numpy/torch (and CUDA) RNG states; explainers that hook the model (Grad-CAM) remove
their hooks in a ``finally``. Failures follow :mod:`.safety`, per kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from deepvid_plugin.callbacks.explanations import Explanations
from deepvid_plugin.callbacks.targets import TargetArtifacts, check_sinks, check_writable_dir
from deepvid_plugin.core import checks
from deepvid_plugin.core.guard import module_device_dtype
from deepvid_plugin.core.sink import Sink
from deepvid_plugin.methods.deepvid.explainer import DEFAULT_VAE_EPOCHS, DEFAULTS


class DeepVIDCallback:
    """Explain ``instances`` with one or more explanation kinds during a training loop.

    Args:
        model: the classifier (a ``torch.nn.Module`` returning logits).
        instances: the tracked images, a ``(K, C, H, W)`` tensor in the model's input space, or
            a dataset (e.g. ``torch.utils.data.Subset`` of the test set; labels and ids are then
            taken from it).
        ids, labels, class_names: optional; ``K`` ids (default ``"0".."K-1"`` or the subset
            indices), ``K`` true class indices, the class names.
        explainers: more explanation kinds, each an explainer
            (:class:`~deepvid_plugin.core.explainer.Explainer`, e.g.
            ``GradCAMExplainer(GradCAM("layer4"), every_n_epochs=5)``,
            ``DeepVIDExplainer(DeepVID(vae, jitter=0.1), every_n_epochs=2)``) or a bare
            :class:`~deepvid_plugin.explain.DeepVID` / :class:`~deepvid_plugin.explain.GradCAM`
            engine, which runs every ``every_n_epochs``. One explainer per kind.
        generator, train_data: the DeepVID shortcut (builds a ``DeepVIDExplainer``): a fitted
            generator (a :class:`~deepvid_plugin.explain.VAE` or anything with
            ``encode``/``decode``); or ``train_data`` (a tensor or DataLoader) to fit a VAE on,
            once, before the first explanation (``vae_epochs`` epochs, with a
            progress bar). That VAE is saved next to the logs and in the MLflow run, and reused
            when the run is resumed. Without ``explainers``, one of the two is required.
        every_n_epochs: the shortcut's and bare engines' schedule: epochs 0, N, 2N, ...
        n_neighbours, radius, temperature, seed, batch_size: the shortcut's DeepVID settings
            (:class:`~deepvid_plugin.explain.DeepVID`'s defaults); changing one without
            ``generator``/``train_data`` is an error (it would be ignored).
        logdir: a TensorBoard log directory, or a ``SummaryWriter`` to write through.
        mlflow: ``True`` for the active MLflow run, or a run id (with ``tracking_uri``).
        sinks: more :class:`~deepvid_plugin.core.sink.Sink` objects (closed by :meth:`close`).
        on_error: ``'warn'`` (default: failures are warned about once per kind, counted in
            :attr:`failures`, and training goes on) or ``'raise'``.
        alerts: the explanation-drift detectors run over every explained step's records
            (``True``, the default: all of them; ``False``; a list of names among
            ``hot_spot``, ``map_drift``, ``concept_shift``, ``graph_shift``; or an
            :class:`~deepvid_plugin.methods.alert.monitor.AlertMonitor`). Their alerts are
            written with the records (kind ``alert``).
        on_alert: called with each alert (``{"step", "detector", "kind", "subject",
            "message", "evidence"}``) once it is written: page someone, or raise to stop the
            training.

    Use :meth:`on_epoch_end` after each epoch; use the callback as a context manager (or call
    :meth:`close`) so every sink is flushed and closed.

    Example::

        >>> import tempfile
        >>> import torch
        >>> from deepvid_plugin.callbacks import DeepVIDCallback
        >>> from deepvid_plugin.explain import GradCAM
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                             torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(4, 1, 8, 8), [0, 1, 2, 0]
        >>> with DeepVIDCallback(model, x, labels=y, explainers=[GradCAM()],
        ...                      logdir=tempfile.mkdtemp(), progress=False) as cb:
        ...     for epoch in range(2):
        ...         # ... train one epoch ...
        ...         records = cb.on_epoch_end(epoch)
        >>> sorted({r.kind for r in records}), len(records)
        (['gradcam'], 4)
    """

    def __init__(self, model: torch.nn.Module, instances: Any, *,
                 ids: Sequence[str] | None = None, labels: Any = None,
                 class_names: Sequence[str] | None = None,
                 explainers: Sequence[Any] | None = None, generator: Any = None,
                 train_data: Any = None, vae_epochs: int = DEFAULT_VAE_EPOCHS,
                 every_n_epochs: int = 1, n_neighbours: int = DEFAULTS["n_neighbours"],
                 radius: Any = DEFAULTS["radius"], temperature: float = DEFAULTS["temperature"],
                 seed: int = DEFAULTS["seed"], batch_size: int = DEFAULTS["batch_size"],
                 logdir: Any = None,
                 mlflow: bool | str | None = None, tracking_uri: str | None = None,
                 sinks: Sequence[Sink] | None = None, on_error: str = "warn",
                 progress: bool = True, alerts: Any = True,
                 on_alert: Callable[[dict[str, Any]], Any] | None = None):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module returning logits, got "
                            f"{type(model).__name__}")
        self.model = model
        self.explanations = Explanations(
            instances, ids=ids, labels=labels, class_names=class_names, explainers=explainers,
            generator=generator, train_data=train_data, vae_epochs=vae_epochs,
            every_n_epochs=every_n_epochs, n_neighbours=n_neighbours, radius=radius,
            temperature=temperature, seed=seed, batch_size=batch_size, on_error=on_error,
            progress=progress, alerts=alerts, on_alert=on_alert)
        if mlflow is not None and not isinstance(mlflow, (bool, str)):
            raise TypeError(f"mlflow: expected True (the active run), a run id string or None, "
                            f"got {type(mlflow).__name__}")
        check_sinks(sinks)
        if logdir is None and not mlflow and not sinks:
            raise ValueError("logdir, mlflow, sinks: expected somewhere to write (a logdir or "
                             "SummaryWriter, mlflow=True or a run id, or sinks=[...]), got none")
        self.sinks: dict[str, Sink] = {}
        self._save_dirs: list[str] = []
        self._mlflow_targets: list[tuple[Any, str]] = []
        if logdir is not None:
            self._add_tensorboard(logdir)
        if mlflow:
            self._add_mlflow(mlflow, tracking_uri)
        for i, s in enumerate(sinks or ()):
            self.sinks[f"{type(s).__name__}[{i}]"] = s
        self._closed = False
        self._last_records: list[Any] = []

    def _add_tensorboard(self, logdir: Any) -> None:
        from deepvid_plugin.tensorboard.summary import TensorBoardSink

        if isinstance(logdir, (str, os.PathLike)):
            directory = check_writable_dir("logdir", logdir)
            target: Any = directory
        elif hasattr(logdir, "_get_file_writer") and hasattr(logdir, "log_dir"):
            directory, target = check_writable_dir("logdir", logdir.log_dir), logdir
        else:
            raise TypeError(f"logdir: expected a directory path or a torch.utils.tensorboard."
                            f"SummaryWriter, got {type(logdir).__name__}")
        self.sinks["tensorboard"] = TensorBoardSink(target)
        self._save_dirs.append(directory)

    def _add_mlflow(self, mlflow_arg: bool | str, tracking_uri: str | None) -> None:
        import mlflow as mlflow_mod

        from deepvid_plugin.mlflow.sink import MLflowSink

        if mlflow_arg is True:
            active = mlflow_mod.active_run()
            if active is None:
                raise ValueError("mlflow: expected an active MLflow run for mlflow=True (call "
                                 "mlflow.start_run() first), or pass a run id; got no active run")
            run_id, uri = active.info.run_id, tracking_uri or mlflow_mod.get_tracking_uri()
        else:
            run_id, uri = mlflow_arg, tracking_uri or mlflow_mod.get_tracking_uri()
            if not run_id:
                raise ValueError("mlflow: expected True or a non-empty run id, got ''")
        client = mlflow_mod.MlflowClient(tracking_uri=uri)
        self.sinks["mlflow"] = MLflowSink(run_id, client=client)
        self._mlflow_targets.append((client, run_id))

    # ---- public API -------------------------------------------------------------------------
    @property
    def failures(self) -> dict[str, int]:
        """what -> how many times it failed (``'mlflow.write'``, ``'gradcam.explain'``,
        ``'deepvid.prepare'``, ...)."""
        return dict(self.explanations.policy.failures)

    @property
    def last_records(self) -> list[Any]:
        """What the last explained epoch produced."""
        return list(self._last_records)

    @property
    def artifacts(self) -> TargetArtifacts:
        """Where explainers keep files: the log directory and the MLflow run."""
        return TargetArtifacts(self._save_dirs, self._mlflow_targets, self.explanations.policy)

    def prepare(self) -> bool:
        """Prepare every explainer now (fit or load the VAE) rather than at the first
        explanation; optional."""
        return self.explanations.prepare(self.model, module_device_dtype(self.model)[0],
                                         self.artifacts)

    def on_epoch_end(self, epoch: int) -> list[Any]:
        """Run the explainers due at ``epoch`` (the TensorBoard/MLflow step) and log.

        Returns the records written, of every kind that ran (empty when none is due, or after
        failures that ``on_error='warn'`` let pass).
        """
        epoch = checks.integer("epoch", epoch, 0)
        if self._closed:
            raise RuntimeError("DeepVIDCallback.on_epoch_end: the callback is closed")
        due = self.explanations.due(epoch)
        if not due:
            return []
        records = self.explanations.run(self.model, epoch, self.sinks,
                                        module_device_dtype(self.model)[0], self.artifacts, due)
        self._last_records = records
        return records

    def flush(self) -> None:
        for name, sink in self.sinks.items():
            self.explanations.policy.call(f"{name}.flush", sink.flush, owner=name)

    def close(self) -> None:
        """Flush and close every sink (idempotent)."""
        if not self._closed:
            self._closed = True
            self.explanations.close(self.sinks)

    def __enter__(self) -> DeepVIDCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: each explainer's last step and state (the fitted VAE)."""
        return self.explanations.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.explanations.load_state_dict(state)


__all__ = ["DeepVIDCallback"]
