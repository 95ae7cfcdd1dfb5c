"""`DeepVIDTrainerCallback`: explanations (Grad-CAM, DeepVID, ...) during a HuggingFace `Trainer` run.

::

    from transformers import Trainer, TrainingArguments
    from deepvid_plugin.callbacks.hf import DeepVIDTrainerCallback
    from deepvid_plugin.explain import GradCAM

    args = TrainingArguments("out", num_train_epochs=3, report_to=["tensorboard", "mlflow"])
    cb = DeepVIDTrainerCallback(x_test[:16], labels=y_test[:16], explainers=[GradCAM()],
                                model=model)
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

Needs ``pip install 'deepvid-plugin[hf]'`` (transformers); importing this module without it
says so. Where it writes follows ``args.report_to``:

- ``"tensorboard"``: the Trainer's TensorBoard run directory (``TENSORBOARD_LOGGING_DIR``, or the
  newest ``<output_dir>/runs/<time>_<host>`` that the Trainer's TensorBoardCallback opened for
  this run), so the DeepVID tab sits next to the Trainer's scalars;
- ``"mlflow"``: the MLflow run the Trainer's MLflowCallback started (``mlflow.active_run()``);
- neither: its own TensorBoard directory, ``logdir`` (default ``<output_dir>/deepvid``), and it
  says where.

Cadence: ``every="epoch"`` (default; the step is the epoch index 0, 1, ...; each explainer keeps
its own ``every_n_epochs``) or ``every="step"`` with ``every_n_steps`` (the step is the
Trainer's ``global_step``, so explanations line up with its loss curves; an explainer's
``every_n_epochs`` then counts these explanation rounds).

The early check (one forward of the tracked instances: output type, labels, ``class_names``,
every explainer's layer and generator) runs in the constructor when ``model=`` is given, else at
``on_train_begin``, before anything is fitted. HuggingFace models return a ``ModelOutput``: its
``.logits`` are used as they are; ``output_transform=`` covers anything else. Only the world
process zero explains and writes.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as e:  # optional dependency: say how to get it
    raise ImportError("DeepVIDTrainerCallback needs transformers: "
                      "pip install 'deepvid-plugin[hf]'") from e

from deepvid_plugin.callbacks.explanations import Explanations
from deepvid_plugin.callbacks.targets import TargetArtifacts, check_sinks, check_writable_dir
from deepvid_plugin.core import checks
from deepvid_plugin.core.guard import module_device_dtype
from deepvid_plugin.core.outputs import ModelView, check_transform
from deepvid_plugin.core.sink import Sink

logger = logging.getLogger("deepvid_plugin.callbacks")

EVERY = ("epoch", "step")


def _report_to(args: Any) -> list[str]:
    value = getattr(args, "report_to", None) or []
    if isinstance(value, str):
        value = [value]
    if "all" in value:
        from transformers.integrations import get_available_reporting_integrations

        value = get_available_reporting_integrations()
    return [str(v) for v in value if v != "none"]


def _tensorboard_dir(args: Any, since: float) -> str | None:
    """The run directory the Trainer's TensorBoardCallback writes to (it opened its writer in
    its own ``on_train_begin``, which runs before ours)."""
    env = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if env:
        return os.path.expanduser(env)
    events = glob.glob(os.path.join(args.output_dir, "runs", "*", "events.out.tfevents.*"))
    fresh = [e for e in events if os.path.getmtime(e) >= since]
    if not fresh:
        return None
    return os.path.dirname(max(fresh, key=os.path.getmtime))


class DeepVIDTrainerCallback(TrainerCallback):
    """Run explainers on ``instances`` during a HuggingFace ``Trainer`` run (see the module
    docstring).

    Arguments are those of :class:`~deepvid_plugin.callbacks.DeepVIDCallback`, plus:

    Args:
        model: the model the Trainer trains, for the early check in the constructor (optional;
            without it the check runs at ``on_train_begin``).
        every: ``"epoch"`` or ``"step"``.
        every_n_steps: with ``every="step"``, explain every this many optimizer steps.
        logdir: where to write when ``report_to`` has neither TensorBoard nor MLflow (default
            ``<output_dir>/deepvid``).

    Example::

        >>> import torch
        >>> from deepvid_plugin.callbacks.hf import DeepVIDTrainerCallback
        >>> from deepvid_plugin.explain import GradCAM
        >>> cb = DeepVIDTrainerCallback(torch.rand(4, 3, 32, 32), explainers=[GradCAM()],
        ...                             every="step", every_n_steps=50)
    """

    def __init__(self, instances: Any, *, model: Any = None, ids: Sequence[str] | None = None,
                 labels: Any = None, class_names: Sequence[str] | None = None,
                 explainers: Sequence[Any] | None = None, generator: Any = None,
                 train_data: Any = None, every: str = "epoch", every_n_steps: int = 100,
                 every_n_epochs: int = 1, logdir: Any = None,
                 sinks: Sequence[Sink] | None = None, on_error: str = "warn",
                 progress: bool = True, output_transform: Any = None, forward_fn: Any = None,
                 **deepvid: Any):
        self.every = checks.choice("every", every, EVERY)
        self.every_n_steps = checks.integer("every_n_steps", every_n_steps, 1)
        self.output_transform = check_transform("output_transform", output_transform)
        self.forward_fn = check_transform("forward_fn", forward_fn)
        if logdir is not None and not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(f"logdir: expected None or a directory path, got "
                            f"{type(logdir).__name__}")
        self.logdir = None if logdir is None else os.fspath(logdir)
        check_sinks(sinks)
        self._extra_sinks = list(sinks or ())
        self.explanations = Explanations(
            instances, ids=ids, labels=labels, class_names=class_names, explainers=explainers,
            generator=generator, train_data=train_data, every_n_epochs=every_n_epochs,
            on_error=on_error, progress=progress, **deepvid)
        self.sinks: dict[str, Sink] = {}
        self._save_dirs: list[str] = []
        self._mlflow_targets: list[tuple[Any, str]] = []
        self._explained: Any = None
        self._checked: Any = None
        self.last_records: list[Any] = []
        self._created = time.time()
        if model is not None:
            self._check(model)

    # ---- what and where ----------------------------------------------------------------------
    @property
    def failures(self) -> dict[str, int]:
        return dict(self.explanations.policy.failures)

    @property
    def artifacts(self) -> TargetArtifacts:
        return TargetArtifacts(self._save_dirs, self._mlflow_targets, self.explanations.policy)

    def _view(self, model: Any) -> Any:
        if self._explained is None or getattr(self._explained, "wrapped",
                                              self._explained) is not model:
            self._explained = model if self.forward_fn is None and self.output_transform is None \
                else ModelView(model, forward_fn=self.forward_fn,
                               output_transform=self.output_transform)
        return self._explained

    def _check(self, model: Any) -> None:
        if self._checked is not model:
            self.explanations.check_model(self._view(model))
            self._checked = model

    def _open_sinks(self, args: Any) -> None:
        from deepvid_plugin.tensorboard.summary import TensorBoardSink

        report = _report_to(args)
        if "tensorboard" in report:
            directory = _tensorboard_dir(args, self._created - 1.0)
            if directory is None:
                directory = os.path.join(args.output_dir, "runs", "deepvid")
                logger.warning("deepvid: found no TensorBoard run directory of this Trainer run "
                               "under %s; writing explanations to %s", args.output_dir, directory)
            directory = check_writable_dir("logdir", directory)
            self.sinks["tensorboard"] = TensorBoardSink(directory)
            self._save_dirs.append(directory)
        if "mlflow" in report:
            import mlflow

            from deepvid_plugin.mlflow.sink import MLflowSink

            active = mlflow.active_run()
            if active is None:
                raise ValueError("args.report_to: expected the Trainer's MLflowCallback to have "
                                 "started an MLflow run, got no active run")
            client = mlflow.MlflowClient(tracking_uri=mlflow.get_tracking_uri())
            self.sinks["mlflow"] = MLflowSink(active.info.run_id, client=client)
            self._mlflow_targets.append((client, active.info.run_id))
        if not self.sinks and not self._extra_sinks:
            directory = check_writable_dir("logdir", self.logdir or os.path.join(
                args.output_dir, "deepvid"))
            logger.warning("deepvid: args.report_to has neither tensorboard nor mlflow (%s); "
                           "writing explanations to %s (tensorboard --logdir %s)",
                           report or "none", directory, directory)
            self.sinks["tensorboard"] = TensorBoardSink(directory)
            self._save_dirs.append(directory)
        for i, s in enumerate(self._extra_sinks):
            self.sinks[f"{type(s).__name__}[{i}]"] = s

    # ---- the Trainer's events ----------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            raise ValueError("model: expected the Trainer to pass its model to callbacks, got "
                             "None")
        self._check(model)
        if not state.is_world_process_zero:
            return
        self._open_sinks(args)
        self.explanations.prepare(self._view(model), module_device_dtype(model)[0],
                                  self.artifacts)

    def _explain(self, model: Any, step: int, due: list) -> None:
        if due:
            self.last_records = self.explanations.run(
                self._view(model), step, self.sinks, module_device_dtype(model)[0],
                self.artifacts, due)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.every != "epoch" or not state.is_world_process_zero or model is None:
            return
        epoch = max(0, int(round(state.epoch or 0)) - 1)  # state.epoch is 1.0 after the first
        self._explain(model, epoch, self.explanations.due(epoch))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every != "step" or not state.is_world_process_zero or model is None:
            return
        step = int(state.global_step)
        if step % self.every_n_steps:
            return
        round_ = step // self.every_n_steps - 1  # the first round is 0, as the first epoch
        due = [e for e in self.explanations.explainers
               if round_ % e.every_n_epochs == 0 and (
                   self.explanations.last_steps.get(e.kind) is None
                   or step > self.explanations.last_steps[e.kind])]
        self._explain(model, step, due)

    def on_train_end(self, args, state, control, **kwargs):
        if self.sinks:
            self.explanations.close(self.sinks)
            self.sinks = {}


__all__ = ["DeepVIDTrainerCallback"]
