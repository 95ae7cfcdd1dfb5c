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

from deepvid_plugin.callbacks.distributed import resolve_group
from deepvid_plugin.callbacks.explanations import Explanations
from deepvid_plugin.callbacks.targets import TargetArtifacts, check_sinks, check_writable_dir
from deepvid_plugin.core import checks
from deepvid_plugin.core.guard import module_device_dtype
from deepvid_plugin.core.outputs import ModelView
from deepvid_plugin.core.sink import Sink, logs_metrics, scalar_metrics
from deepvid_plugin.methods.deepvid.explainer import DEFAULT_VAE_EPOCHS, DEFAULTS


class DeepVIDCallback:
    """Explain ``instances`` with one or more explanation kinds during a training loop.

    Args:
        model: the classifier (a ``torch.nn.Module``; its output holds the logits: a tensor, a
            HuggingFace ``ModelOutput``, a dict with ``"logits"``, a tuple whose first item is
            the logits, or anything ``output_transform`` turns into them).
        instances: the tracked images, a ``(K, C, H, W)`` tensor in the model's input space, or
            a dataset (e.g. ``torch.utils.data.Subset`` of the test set; labels and ids are then
            taken from it).
        ids, labels, class_names: optional; ``K`` ids (default ``"0".."K-1"`` or the subset
            indices), ``K`` true class indices (or a ``(K, n_classes)`` multi-hot matrix for a
            multi-label model, whose explainers then take ``outputs="sigmoid"``), the class
            names.
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
        output_transform: a callable from the model's output to its ``(N, n_classes)`` logits,
            applied for every explainer (ignite's ``output_transform``).
        forward_fn: ``forward_fn(model, x)`` runs the classifier when ``model(x)`` does not
            (a LightningModule without ``forward``: ``lambda m, x: m.net(x)``).
        step_offset: added to each epoch to make its step (default 0): a later training stage
            whose epoch counter starts at 0 again continues a timeline with
            ``step_offset=<last logged step + 1>`` (a step at or below one already logged is
            skipped, with a warning that says so).
        distributed: ``None`` (default: share the work when ``torch.distributed`` is initialised
            with several ranks), ``False`` (this process explains everything alone), ``True``
            (require a process group) or a ``torch.distributed`` process group. When shared,
            *every* rank must build the callback with the same arguments and call
            :meth:`on_epoch_end` at the same epochs: each explains its share (the tracked
            instances, the probe images), and rank zero gathers the records and alone writes
            (other ranks create no log files and save nothing). See ``docs/distributed.md``.
        alerts: the explanation-drift detectors run over every explained step's records
            (``True``, the default: all of them; ``False``; a list of names among
            ``hot_spot``, ``map_drift``, ``concept_shift``, ``graph_shift``; or an
            :class:`~deepvid_plugin.methods.alert.monitor.AlertMonitor`). Their alerts are
            written with the records (kind ``alert``).
        on_alert: called with each alert (``{"step", "detector", "kind", "subject",
            "message", "evidence"}``) once it is written: page someone, or raise to stop the
            training.

    A model wrapped in ``DistributedDataParallel`` is explained through its ``module``: the
    wrapper's forward would synchronise buffers with the other ranks, which explain other
    instances at that moment.

    The constructor runs one forward of the tracked instances (the model on its device) and
    checks the output, the labels, ``class_names`` and every explainer's layer and generator
    there, before any VAE is fitted, so a mistake fails now, not at the end of the first epoch.

    Use :meth:`on_epoch_end` after each epoch (and :meth:`log_metrics` for your test accuracy or
    loss, shown above the explanations); use the callback as a context manager (or call
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
                 progress: bool = True, output_transform: Any = None, forward_fn: Any = None,
                 step_offset: int = 0, distributed: Any = None, alerts: Any = True,
                 on_alert: Callable[[dict[str, Any]], Any] | None = None):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module returning logits, got "
                            f"{type(model).__name__}")
        self.model = _unwrapped(model)
        # what the explainers run: the model itself, or a view of it (same modules and names)
        # that goes through forward_fn/output_transform
        self._explained = self.model if output_transform is None and forward_fn is None else \
            ModelView(self.model, forward_fn=forward_fn, output_transform=output_transform)
        self.explanations = Explanations(
            instances, ids=ids, labels=labels, class_names=class_names, explainers=explainers,
            generator=generator, train_data=train_data, vae_epochs=vae_epochs,
            every_n_epochs=every_n_epochs, n_neighbours=n_neighbours, radius=radius,
            temperature=temperature, seed=seed, batch_size=batch_size, on_error=on_error,
            progress=progress, step_offset=step_offset, alerts=alerts, on_alert=on_alert)
        self.explanations.check_model(self._explained)
        if mlflow is not None and not isinstance(mlflow, (bool, str)):
            raise TypeError(f"mlflow: expected True (the active run), a run id string or None, "
                            f"got {type(mlflow).__name__}")
        check_sinks(sinks)
        if logdir is None and not mlflow and not sinks:
            raise ValueError("logdir, mlflow, sinks: expected somewhere to write (a logdir or "
                             "SummaryWriter, mlflow=True or a run id, or sinks=[...]), got none")
        self.explanations.group = resolve_group(distributed)
        writes = self.explanations.group is None or self.explanations.group.is_zero
        self.sinks: dict[str, Sink] = {}
        self._save_dirs: list[str] = []
        self._mlflow_targets: list[tuple[str, Any]] = []  # (sink name, MLflowSink)
        if logdir is not None and writes:  # only rank zero writes: no event files elsewhere
            self._add_tensorboard(logdir)
        if mlflow and writes:  # other ranks have no MLflow run
            self._add_mlflow(mlflow, tracking_uri)
        for i, s in enumerate(sinks or ()):
            self.sinks[f"{type(s).__name__}[{i}]"] = s
        self._closed = False
        self._last_records: list[Any] = []

    def _add_tensorboard(self, logdir: Any) -> None:
        from deepvid_plugin.tensorboard.lock import check_run_dir
        from deepvid_plugin.tensorboard.summary import TensorBoardSink

        if isinstance(logdir, (str, os.PathLike)):
            check_run_dir("logdir", os.path.abspath(logdir))  # before a directory is made
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
        sink = MLflowSink(run_id, client=mlflow_mod.MlflowClient(tracking_uri=uri))
        sink.claim()  # a wrong run id or another live writer is refused now, when reachable
        self.sinks["mlflow"] = sink
        self._mlflow_targets.append(("mlflow", sink))

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
        explanation; optional. Under DDP every rank must call it (rank zero fits, the others
        load its state)."""
        return self.explanations.prepare(self._explained, module_device_dtype(self.model)[0],
                                         self.artifacts)

    def on_epoch_end(self, epoch: int) -> list[Any]:
        """Run the explainers due at ``epoch`` (the TensorBoard/MLflow step, plus
        ``step_offset``) and log.

        Returns the records written, of every kind that ran (empty when none is due, or when
        no sink took them after failures that ``on_error='warn'`` let pass; under DDP, empty on
        ranks other than zero).
        """
        epoch = checks.integer("epoch", epoch, 0)
        if self._closed:
            raise RuntimeError("DeepVIDCallback.on_epoch_end: the callback is closed")
        due = self.explanations.due(epoch)
        if not due:
            return []
        records = self.explanations.run(self._explained, epoch, self.sinks,
                                        module_device_dtype(self.model)[0], self.artifacts, due)
        self._last_records = records
        return records

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log the run's own scalar metrics (test accuracy, loss) at ``step`` to every sink that
        takes them: TensorBoard scalars (the Scalars dashboard charts them) and MLflow metrics.
        The DeepVID tab shows the chosen one above its grid, on the explanations' steps. A
        failing sink is handled like a failing write (``on_error``): training goes on.

        Metrics logged some other way (your own ``SummaryWriter.add_scalar`` into the same
        logdir, ``mlflow.log_metric`` into the same run) are shown as well.
        """
        values = scalar_metrics(metrics)
        step = checks.integer("step", step, 0)
        if self._closed:
            raise RuntimeError("DeepVIDCallback.log_metrics: the callback is closed")
        for name, sink in self.sinks.items():
            if logs_metrics(sink):
                self.explanations.policy.call(f"{name}.log_metrics", sink.log_metrics, values,
                                              step, owner=name)

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


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    parallel = torch.nn.parallel.DistributedDataParallel
    return model.module if isinstance(model, parallel) else model


__all__ = ["DeepVIDCallback"]
