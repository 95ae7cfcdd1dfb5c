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
:mod:`deepvid_plugin.explain.protocol`) lives in :class:`Explanations`, shared with the Lightning
callback; *where* it goes is a list of sinks (ignite-style). The DeepVID keyword arguments
(``generator``/``train_data`` and DeepVID's settings) are a shortcut that builds a
:class:`~deepvid_plugin.explain.deepvid_explainer.DeepVIDExplainer`.

The callback must never change the training it watches. Every explainer is prepared and run
inside one guard (:func:`untouched`) that restores every module's ``training`` flag, grad mode and
the python/numpy/torch (and CUDA) RNG states; explainers that hook the model (Grad-CAM) remove
their hooks in a ``finally``. Failures follow :mod:`.safety`, per kind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from deepvid_plugin.callbacks.safety import ErrorPolicy, check_on_error

from deepvid_plugin.explain import checks
from deepvid_plugin.explain._guard import module_device_dtype, preserved_rng
from deepvid_plugin.explain.deepvid import DeepVID
from deepvid_plugin.explain.deepvid_explainer import (
    DEFAULT_VAE_EPOCHS,
    DEFAULTS,
    VAE_ARTIFACT_DIR,
    VAE_FILE,
    DeepVIDExplainer,
)
from deepvid_plugin.explain.gradcam import GradCAM, GradCAMExplainer
from deepvid_plugin.explain.protocol import ExplainContext, Explainer, is_explainer
from deepvid_plugin.sinks import Sink

logger = logging.getLogger("deepvid_plugin.callbacks")

__all__ = ["VAE_ARTIFACT_DIR", "VAE_FILE", "DeepVIDCallback", "Explanations", "TargetArtifacts",
           "build_explainers", "check_sinks", "untouched"]

#: 2: one entry per explainer kind (``explainers``); 1 (DeepVID only) is still read.
_STATE_VERSION = 2
#: the DeepVID shortcut's settings and their defaults (the callbacks' signatures show them).
_SHORTCUT_DEFAULTS = {**DEFAULTS, "vae_epochs": DEFAULT_VAE_EPOCHS}


def _is_default(name: str, value: Any) -> bool:
    default = _SHORTCUT_DEFAULTS[name]
    return value is None or (type(value) in (int, float) and value == default)


def _load_instances(instances: Any) -> tuple[torch.Tensor, list[int] | None, list[str] | None]:
    """``(x, labels found in the data, default ids)`` from a tensor or a map-style dataset."""
    if isinstance(instances, np.ndarray) and instances.dtype.kind == "f":
        instances = torch.from_numpy(instances)
    if isinstance(instances, torch.Tensor):
        x, labels, ids = instances, None, None
    elif not isinstance(instances, (str, bytes, np.ndarray)) and hasattr(instances, "__getitem__") \
            and hasattr(instances, "__len__"):
        n = len(instances)
        if n == 0:
            raise ValueError("instances: expected at least one instance, got an empty dataset")
        items = [instances[i] for i in range(n)]
        xs = [it[0] if isinstance(it, (tuple, list)) else it for it in items]
        if not all(isinstance(t, torch.Tensor) for t in xs):
            raise TypeError("instances: expected a dataset of image tensors or (image, label) "
                            f"tuples, got items of type {type(xs[0]).__name__}")
        if any(t.shape != xs[0].shape for t in xs):
            raise ValueError("instances: expected images of one shape, got "
                             f"{sorted({tuple(t.shape) for t in xs})}")
        x = torch.stack(xs)
        ys = [it[1] for it in items if isinstance(it, (tuple, list)) and len(it) > 1]
        labels = [int(y) for y in ys] if len(ys) == n and all(
            isinstance(y, (int, np.integer)) or (isinstance(y, torch.Tensor) and y.numel() == 1)
            for y in ys) else None
        # torch.utils.data.Subset: name instances by their index in the full dataset.
        indices = getattr(instances, "indices", None)
        ids = [str(int(i)) for i in indices] if indices is not None and len(indices) == n else None
    else:
        raise TypeError("instances: expected a (K, C, H, W) tensor or a dataset (e.g. "
                        f"torch.utils.data.Subset), got {type(instances).__name__}")
    x = checks.images("instances", x)
    return x.to("cpu", torch.float32).clone(), labels, ids



def _check_writable_dir(name: str, path: Any) -> str:
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".deepvid-write-check-"):
            pass
    except OSError as e:
        raise ValueError(f"{name}: expected a directory that can be written, got {path!r} "
                         f"({type(e).__name__}: {e})") from e
    return path


@contextlib.contextmanager
def untouched(*modules: Any) -> Iterator[None]:
    """Everything the callback does happens in here: RNGs, training flags and grad mode are put
    back exactly as they were, whatever happens inside (the engine guards itself too; this is
    the callback's own guarantee, covering VAE fitting and device moves as well)."""
    flags = [(m, m.training) for mod in modules if isinstance(mod, torch.nn.Module)
             for m in mod.modules()]
    try:
        with preserved_rng(), torch.no_grad():
            yield
    finally:
        for m, flag in flags:
            m.training = flag


def build_explainers(explainers: Any, *, every_n_epochs: int, generator: Any, train_data: Any,
                     progress: bool, **shortcut: Any) -> list[Explainer]:
    """The explainers a callback runs: the DeepVID shortcut (``generator``/``train_data`` and
    DeepVID settings) first, then ``explainers``, where a bare :class:`DeepVID` or
    :class:`GradCAM` engine is wrapped in its explainer with the callback's ``every_n_epochs``.
    """
    every = checks.integer("every_n_epochs", every_n_epochs, 1)
    if explainers is not None and (isinstance(explainers, (str, bytes))
                                   or not isinstance(explainers, Sequence)):
        raise TypeError(f"explainers: expected a list of explainers or DeepVID/GradCAM engines, "
                        f"got {type(explainers).__name__}")
    out: list[Explainer] = []
    if generator is not None and train_data is not None:
        raise ValueError("generator, train_data: expected one of them (a fitted generator, "
                         "or data to fit a VAE on), got both")
    if generator is not None or train_data is not None:
        if generator is not None:
            checks.generator(generator)
        out.append(DeepVIDExplainer(generator=generator, train_data=train_data,
                                    every_n_epochs=every, progress=progress,
                                    **{k: v for k, v in shortcut.items() if v is not None}))
    else:
        # A DeepVID setting without a generator would be silently ignored: refuse it.
        unused = sorted(k for k, v in shortcut.items() if not _is_default(k, v))
        if unused:
            raise ValueError(f"{unused[0]}: a DeepVID setting of the shortcut, expected with "
                             f"generator=... or train_data=... (or pass it to "
                             f"DeepVIDExplainer(...) in explainers), got it alone")
        if not explainers:
            raise ValueError("generator: expected a fitted generator (e.g. a VAE) or "
                             "train_data=... to fit a VAE on, or explainers=[...]; got neither")
    for item in explainers or ():
        if isinstance(item, DeepVID):
            item = DeepVIDExplainer(item, every_n_epochs=every, progress=progress)
        elif isinstance(item, GradCAM):
            item = GradCAMExplainer(item, every_n_epochs=every)
        elif not is_explainer(item):
            raise TypeError(f"explainers: expected explainers (kind, every_n_epochs, prepare, "
                            f"explain, state_dict, load_state_dict) or DeepVID/GradCAM engines, "
                            f"got {type(item).__name__}")
        out.append(item)
    kinds = [e.kind for e in out]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"explainers: expected one explainer per kind (their records would "
                         f"share tags), got kinds {kinds}")
    return out


class TargetArtifacts:
    """The explainers' artifact store over a callback's targets: files go into every log
    directory and into every MLflow run (``(MlflowClient, run_id)``), each under the policy."""

    def __init__(self, dirs: Sequence[str], mlflow_targets: Sequence[tuple[Any, str]],
                 policy: ErrorPolicy):
        self.dirs = list(dirs)
        self.mlflow_targets = list(mlflow_targets)
        self.policy = policy

    def find(self, name: str) -> str | None:
        for d in self.dirs:
            path = os.path.join(d, name)
            if os.path.exists(path):
                return path
        return None

    def save(self, name: str, write: Callable[[str], None], folder: str) -> None:
        for d in self.dirs:
            self.policy.call("save_artifact", write, os.path.join(d, name))
        for client, run_id in self.mlflow_targets:
            self.policy.call("mlflow.save_artifact", self._log, client, run_id, name, write,
                             folder, owner="mlflow")

    @staticmethod
    def _log(client: Any, run_id: str, name: str, write: Callable[[str], None],
             folder: str) -> None:
        with tempfile.TemporaryDirectory(prefix="deepvid-artifact-") as tmp:
            path = os.path.join(tmp, name)
            write(path)
            client.log_artifact(run_id, path, artifact_path=folder)


class Explanations:
    """*What* a callback explains: the tracked instances and the explainers (one per kind), with
    each explainer's schedule and the resume state. Framework-free; both callbacks use it.

    Arguments are those of :class:`DeepVIDCallback` (see there) without the model and the write
    targets.
    """

    def __init__(self, instances: Any, *, ids: Sequence[str] | None = None,
                 labels: Any = None, class_names: Sequence[str] | None = None,
                 explainers: Sequence[Any] | None = None, generator: Any = None,
                 train_data: Any = None, vae_epochs: int = DEFAULT_VAE_EPOCHS,
                 every_n_epochs: int = 1, n_neighbours: int = DEFAULTS["n_neighbours"],
                 radius: Any = DEFAULTS["radius"], temperature: float = DEFAULTS["temperature"],
                 seed: int = DEFAULTS["seed"], batch_size: int = DEFAULTS["batch_size"],
                 on_error: str = "warn", progress: bool = True):
        x, found_labels, default_ids = _load_instances(instances)
        k = x.shape[0]
        self.x = x
        self.ids = checks.ids(ids, k, default_ids)
        self.class_names = checks.class_names(class_names)
        n_classes = len(self.class_names) if self.class_names is not None else None
        self.labels = checks.labels(labels if labels is not None else found_labels, k,
                                    n_classes)
        self.policy = ErrorPolicy(check_on_error(on_error))
        self.progress = bool(progress)
        self.explainers = build_explainers(
            explainers, every_n_epochs=every_n_epochs, generator=generator,
            train_data=train_data, progress=self.progress, vae_epochs=vae_epochs,
            n_neighbours=n_neighbours, radius=radius, temperature=temperature, seed=seed,
            batch_size=batch_size)
        for e in self.explainers:
            check = getattr(e, "check", None)
            if callable(check):
                check(self.x)
        self.last_steps: dict[str, int | None] = {e.kind: None for e in self.explainers}
        self.written_steps: list[int] = []  # steps explained and handed to the sinks, this process
        self._prepared: set[str] = set()

    # ---- views kept for callers of the DeepVID-only callback ---------------------------------
    @property
    def deepvid(self) -> DeepVIDExplainer | None:
        """The ``deepvid`` explainer, if one runs."""
        return next((e for e in self.explainers if isinstance(e, DeepVIDExplainer)), None)

    @property
    def explainer(self) -> DeepVID | None:
        """The DeepVID engine (after :meth:`prepare`), e.g. for the randomization check."""
        return None if self.deepvid is None else self.deepvid.engine

    @property
    def generator(self) -> Any:
        return None if self.deepvid is None else self.deepvid.generator

    @property
    def generator_source(self) -> str | None:
        return None if self.deepvid is None else self.deepvid.generator_source

    @property
    def last_step(self) -> int | None:
        """The last step any explainer logged."""
        done = [s for s in self.last_steps.values() if s is not None]
        return max(done) if done else None

    # ---- schedule -----------------------------------------------------------------------------
    def due(self, epoch: int) -> list[Explainer]:
        """The explainers due at ``epoch``: each at its epochs 0, N, 2N, ... (the first epoch
        shows the early reasoning), and never twice: a resumed run skips what it logged."""
        out = []
        for e in self.explainers:
            last = self.last_steps.get(e.kind)
            if (last is None or epoch > last) and epoch % e.every_n_epochs == 0:
                out.append(e)
        return out

    def mark_done(self, step: int, explainers: Sequence[Explainer]) -> None:
        for e in explainers:
            self.last_steps[e.kind] = step

    # ---- preparing and explaining ------------------------------------------------------------
    def context(self, device: torch.device | None, artifacts: Any) -> ExplainContext:
        return ExplainContext(
            x=self.x, ids=tuple(self.ids),
            labels=None if self.labels is None else tuple(self.labels),
            class_names=None if self.class_names is None else tuple(self.class_names),
            device=torch.device(device or "cpu"), artifacts=artifacts, progress=self.progress)

    def _guard(self, model: Any) -> contextlib.AbstractContextManager[None]:
        modules = [getattr(e, "generator", None) for e in self.explainers]
        return untouched(model, *[m for m in modules if isinstance(m, torch.nn.Module)])

    def _prepare(self, explainers: Sequence[Explainer], ctx: ExplainContext) -> list[Explainer]:
        ready = []
        for e in explainers:
            if e.kind not in self._prepared:
                ok, _ = self.policy.call(f"{e.kind}.prepare", e.prepare, ctx, owner=e.kind)
                if not ok:
                    continue
                self._prepared.add(e.kind)
            ready.append(e)
        return ready

    def prepare(self, model: Any, device: torch.device | None, artifacts: Any) -> bool:
        """Prepare every explainer now (fit the VAE, ...), inside the guard; True when all are
        ready (False after a failure that ``on_error='warn'`` let pass: retried when due)."""
        with self._guard(model):
            ready = self._prepare(self.explainers, self.context(device, artifacts))
        return len(ready) == len(self.explainers)

    def run(self, model: Any, step: int, sinks: Mapping[str, Sink],
            device: torch.device | None, artifacts: Any,
            due: Sequence[Explainer] | None = None) -> list[Any]:
        """Run the explainers due at ``step`` inside one guard, then write every record to every
        sink, all under the error policy. Returns the records written."""
        due = self.due(step) if due is None else list(due)
        records: list[Any] = []
        ran: list[Explainer] = []
        with self._guard(model):
            for e in self._prepare(due, self.context(device, artifacts)):
                ok, got = self.policy.call(f"{e.kind}.explain", e.explain, model, step,
                                           owner=e.kind)
                if ok:
                    records.extend(got)
                    ran.append(e)
        if ran:
            self.write(records, step, sinks)
            self.mark_done(step, ran)
            self.written_steps.append(step)
        return records

    def write(self, records: Sequence[Any], step: int, sinks: Mapping[str, Sink]) -> None:
        for name, sink in sinks.items():
            for record in records:
                ok, _ = self.policy.call(f"{name}.write", sink.write, record, step, owner=name,
                                         proves=False)  # may only have been buffered
                if not ok:  # the sink is broken this epoch: don't pay its failure per record
                    break
            else:
                self.policy.call(f"{name}.flush", sink.flush, owner=name)

    def close(self, sinks: Mapping[str, Sink]) -> None:
        for name, sink in sinks.items():
            self.policy.call(f"{name}.close", sink.close, owner=name)

    # ---- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loads with ``torch.load(weights_only=True)``)."""
        return {"version": _STATE_VERSION, "last_step": self.last_step, "ids": list(self.ids),
                "failures": dict(self.policy.failures),
                "explainers": {e.kind: {"last_step": self.last_steps[e.kind],
                                        "state": e.state_dict()} for e in self.explainers}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or "version" not in state:
            raise TypeError(f"state: expected a dict from state_dict(), got {type(state).__name__}")
        version = int(state["version"])
        if version > _STATE_VERSION:
            raise ValueError(f"state: version {version} is newer than this deepvid-plugin reads "
                             f"({_STATE_VERSION}); upgrade deepvid-plugin")
        if list(state.get("ids", self.ids)) != self.ids:
            raise ValueError(f"state: it tracks instances {list(state['ids'])}, this callback "
                             f"tracks {self.ids}; resume with the same instances")
        if version == 1:  # DeepVID only: its last step and its fitted VAE
            per_kind = {"deepvid": {"last_step": state.get("last_step"),
                                    "state": {"vae": state["vae"]} if "vae" in state else {}}}
        else:
            per_kind = dict(state.get("explainers", {}))
        for e in self.explainers:
            entry = per_kind.get(e.kind)
            if entry is None:  # a kind added on resume starts its own schedule now
                continue
            e.load_state_dict(entry.get("state", {}))
            self.last_steps[e.kind] = entry.get("last_step")
        dropped = sorted(set(per_kind) - set(self.last_steps))
        if dropped:
            logger.info("deepvid: the checkpoint has state of kinds %s that this callback does "
                        "not run; ignored", dropped)
        self.policy.failures.update(state.get("failures", {}))


def check_sinks(sinks: Any) -> None:
    """``sinks`` must be None or a list of objects implementing the Sink protocol."""
    if sinks is None:
        return
    if isinstance(sinks, (str, bytes)) or not isinstance(sinks, Sequence):
        raise TypeError(f"sinks: expected a list of Sink objects, got {type(sinks).__name__}")
    for s in sinks:
        if not isinstance(s, Sink):
            raise TypeError(f"sinks: expected objects with write(record, step), flush() and "
                            f"close(), got {type(s).__name__}")


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
            (:class:`~deepvid_plugin.explain.protocol.Explainer`, e.g.
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
        sinks: more :class:`~deepvid_plugin.sinks.Sink` objects (closed by :meth:`close`).
        on_error: ``'warn'`` (default: failures are warned about once per kind, counted in
            :attr:`failures`, and training goes on) or ``'raise'``.

    Use :meth:`on_epoch_end` after each epoch; use the callback as a context manager (or call
    :meth:`close`) so every sink is flushed and closed.
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
                 progress: bool = True):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module returning logits, got "
                            f"{type(model).__name__}")
        self.model = model
        self.explanations = Explanations(
            instances, ids=ids, labels=labels, class_names=class_names, explainers=explainers,
            generator=generator, train_data=train_data, vae_epochs=vae_epochs,
            every_n_epochs=every_n_epochs, n_neighbours=n_neighbours, radius=radius,
            temperature=temperature, seed=seed, batch_size=batch_size, on_error=on_error,
            progress=progress)
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
            directory = _check_writable_dir("logdir", logdir)
            target: Any = directory
        elif hasattr(logdir, "_get_file_writer") and hasattr(logdir, "log_dir"):
            directory, target = _check_writable_dir("logdir", logdir.log_dir), logdir
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
