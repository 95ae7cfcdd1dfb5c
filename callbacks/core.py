"""`DeepVIDCallback`: explain a fixed set of instances every N epochs of a plain PyTorch loop.

::

    from deepvid_plugin.callbacks import DeepVIDCallback

    with DeepVIDCallback(model, x_test[:16], labels=y_test[:16], train_data=x_train,
                         logdir="runs/exp1", mlflow=True) as cb:
        for epoch in range(epochs):
            train_one_epoch(model, ...)
            cb.on_epoch_end(epoch)

*What* is explained (instances, generator, DeepVID settings) lives in :class:`Explanations`,
shared with the Lightning callback; *where* it goes is a list of sinks (ignite-style).

The callback must never change the training it watches. Around every explanation it restores
every module's ``training`` flag, the python/numpy/torch (and CUDA) RNG states, and runs under
``no_grad`` in eval mode (so BatchNorm statistics and Dropout are untouched); it registers no
hooks. Fitting the VAE happens under the same RNG guard. Failures follow :mod:`.safety`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from deepvid_plugin.callbacks.safety import ErrorPolicy, check_on_error

from deepvid_plugin.explain import VAE, DeepVID
from deepvid_plugin.explain._guard import module_device_dtype, preserved_rng
from deepvid_plugin.explain.vae import VAEConfig
from deepvid_plugin.record import ExplanationRecord
from deepvid_plugin.sinks import Sink

logger = logging.getLogger("deepvid_plugin.callbacks")

#: file name of a VAE fitted by the callback, next to the TensorBoard logs.
VAE_FILE = "deepvid-vae.pt"
#: MLflow artifact folder of the same file (outside ``deepvid/``, the records' layout).
VAE_ARTIFACT_DIR = "deepvid-generator"
_STATE_VERSION = 1


# ---- argument checks (every message names the argument, the expectation and what arrived) ----
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def _check_radius(radius: Any) -> Any:
    try:
        r = torch.as_tensor(radius, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"radius: expected a number > 0 or one per latent dimension, got "
                         f"{radius!r}") from e
    if r.dim() > 1 or r.numel() == 0 or not torch.isfinite(r).all() or (r <= 0).any():
        raise ValueError(f"radius: expected a number > 0 or one per latent dimension, got "
                         f"{radius!r}")
    return radius


def _load_instances(instances: Any) -> tuple[torch.Tensor, list[int] | None, list[str] | None]:
    """``(x, labels found in the data, default ids)`` from a tensor or a map-style dataset."""
    if isinstance(instances, np.ndarray) and instances.dtype.kind == "f":
        instances = torch.from_numpy(instances)
    if isinstance(instances, torch.Tensor):
        x, labels, ids = instances, None, None
    elif not isinstance(instances, (str, bytes, np.ndarray)) and hasattr(instances, "__getitem__") and hasattr(instances, "__len__"):
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
    if x.dim() != 4:
        hint = " (use x.unsqueeze(0) for a single image)" if x.dim() == 3 else ""
        raise ValueError(f"instances: expected images of shape (K, C, H, W), got shape "
                         f"{tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"instances: expected a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("instances: expected at least one instance, got 0")
    return x.detach().to("cpu", torch.float32).clone(), labels, ids


def _check_ids(ids: Any, k: int, default: list[str] | None) -> list[str]:
    if ids is None:
        return default or [str(i) for i in range(k)]
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"ids: expected a sequence of {k} strings, got {type(ids).__name__}")
    out = [str(i) for i in ids]
    if len(out) != k:
        raise ValueError(f"ids: expected {k} ids (one per instance), got {len(out)}")
    if len(set(out)) != k or any(not i for i in out):
        raise ValueError(f"ids: expected {k} unique non-empty ids, got {out}")
    return out


def _check_labels(labels: Any, k: int, n_classes: int | None) -> list[int] | None:
    if labels is None:
        return None
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        if labels.ndim != 1:
            raise ValueError(f"labels: expected a 1-d sequence of {k} class indices, got shape "
                             f"{tuple(labels.shape)}")
        labels = labels.tolist()
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise TypeError(f"labels: expected a sequence of {k} class indices, got "
                        f"{type(labels).__name__}")
    if len(labels) != k:
        raise ValueError(f"labels: expected {k} labels (one per instance), got {len(labels)}")
    top = n_classes if n_classes is not None else None
    for v in labels:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 \
                or (top is not None and v >= top):
            want = f"in [0, {top})" if top is not None else ">= 0"
            raise ValueError(f"labels: expected class indices {want}, got {list(labels)}")
    return [int(v) for v in labels]


def _check_class_names(class_names: Any) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names: expected a sequence of strings, got "
                        f"{type(class_names).__name__}")
    names = [str(c) for c in class_names]
    if len(names) < 2:
        raise ValueError(f"class_names: expected at least 2 names, got {names}")
    return names


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


class Explanations:
    """*What* a DeepVID callback explains: the tracked instances, the generator and the
    DeepVID settings; plus the resume state. Framework-free; both callbacks use it."""

    def __init__(self, instances: Any, *, ids: Sequence[str] | None = None,
                 labels: Any = None, class_names: Sequence[str] | None = None,
                 generator: Any = None, train_data: Any = None, vae_epochs: int = 30,
                 every_n_epochs: int = 1, n_neighbours: int = 512, radius: Any = 0.5,
                 temperature: float = 2.0, seed: int = 0, batch_size: int = 512,
                 on_error: str = "warn", progress: bool = True):
        x, found_labels, default_ids = _load_instances(instances)
        k = x.shape[0]
        self.x = x
        self.ids = _check_ids(ids, k, default_ids)
        self.class_names = _check_class_names(class_names)
        n_classes = len(self.class_names) if self.class_names is not None else None
        self.labels = _check_labels(labels if labels is not None else found_labels, k, n_classes)
        if generator is not None and train_data is not None:
            raise ValueError("generator, train_data: expected one of them (a fitted generator, "
                             "or data to fit a VAE on), got both")
        if generator is None and train_data is None:
            raise ValueError("generator: expected a fitted generator (e.g. a VAE) or "
                             "train_data=... to fit a VAE on, got neither")
        if generator is not None and not (callable(getattr(generator, "encode", None))
                                          and callable(getattr(generator, "decode", None))):
            raise TypeError(f"generator: expected an object with encode() and decode() (e.g. a "
                            f"fitted deepvid_plugin.explain.VAE), got {type(generator).__name__}")
        if train_data is not None:
            self._check_train_data(train_data)
        self.every_n_epochs = _check_int("every_n_epochs", every_n_epochs, 1)
        self.n_neighbours = _check_int("n_neighbours", n_neighbours, 10)
        self.vae_epochs = _check_int("vae_epochs", vae_epochs, 1)
        self.seed = _check_int("seed", seed, 0)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.radius = _check_radius(radius)
        self.temperature = _check_positive("temperature", temperature)
        self.policy = ErrorPolicy(check_on_error(on_error))
        self.progress = bool(progress)
        self.generator = generator
        self.train_data = train_data
        self.fitted_vae: VAE | None = None  # a VAE this callback fitted or restored
        self.generator_source = "given" if generator is not None else None
        self.last_step: int | None = None
        self.written_steps: list[int] = []  # steps explained and handed to the sinks, this process
        self._explainer: DeepVID | None = None

    def _check_train_data(self, data: Any) -> None:
        c, h, w = self.x.shape[1:]
        try:
            VAEConfig(c, h, w)  # the default VAE handles 1 or 3 channels, 8..64 pixels
        except ValueError as e:
            raise ValueError(f"train_data: the built-in VAE cannot model instances of shape "
                             f"{(c, h, w)} ({e}); pass generator=... instead") from e
        if isinstance(data, torch.Tensor):
            if data.dim() != 4 or tuple(data.shape[1:]) != (c, h, w):
                raise ValueError(f"train_data: expected images of shape (N, {c}, {h}, {w}) like "
                                 f"the instances, got {tuple(data.shape)}")
        elif not hasattr(data, "__iter__"):
            raise TypeError(f"train_data: expected a (N, C, H, W) tensor or a DataLoader, got "
                            f"{type(data).__name__}")

    # ---- schedule -----------------------------------------------------------------------------
    def due(self, epoch: int) -> bool:
        """Explain at epochs 0, N, 2N, ... (the first epoch shows the early reasoning), and never
        twice: a resumed run skips epochs it already logged."""
        if self.last_step is not None and epoch <= self.last_step:
            return False
        return epoch % self.every_n_epochs == 0

    # ---- the generator --------------------------------------------------------------------
    def prepare(self, device: torch.device | None = None, save_dirs: Sequence[str] = (),
                mlflow_targets: Sequence[tuple[Any, str]] = ()) -> bool:
        """Make sure there is a generator: the given one, one restored by
        :meth:`load_state_dict`, a VAE saved next to the logs by an earlier run, or a VAE
        fitted now on ``train_data`` (shown with a progress bar, then saved to every
        ``save_dirs`` and as an artifact of every ``(MlflowClient, run_id)``).

        Returns False when that failed (under ``on_error='warn'``; explaining is then off).
        """
        if self.generator is not None or "explain" in self.policy.disabled:
            return self.generator is not None
        ok, vae = self.policy.call("generator", self._obtain_vae, device, save_dirs)
        if not ok:
            self.policy.disabled.add("explain")  # refitting every epoch would cost the run
            return False
        self.generator = self.fitted_vae = vae
        if self.generator_source == "fitted":
            for client, run_id in mlflow_targets:
                self.policy.call("mlflow.save_vae", self._log_vae, client, run_id,
                                 owner="mlflow")
        return True

    def _obtain_vae(self, device: torch.device | None, save_dirs: Sequence[str]) -> VAE:
        c, h, w = self.x.shape[1:]
        for d in save_dirs:
            path = os.path.join(d, VAE_FILE)
            if os.path.exists(path):
                with preserved_rng():  # building the modules draws initial weights
                    vae = VAE.load(path)
                if (vae.config.channels, vae.config.height, vae.config.width) == (c, h, w):
                    logger.info("deepvid: reusing the VAE saved at %s", path)
                    self.generator_source = "logdir"
                    return vae.to(device or "cpu")
                logger.warning("deepvid: ignoring %s: it models %s images, not %s", path,
                               (vae.config.channels, vae.config.height, vae.config.width),
                               (c, h, w))
        with preserved_rng():
            torch.manual_seed(self.seed)  # a seeded init: the same VAE on every rank and rerun
            vae = VAE(c, h, w).to(device or "cpu")
            with torch.enable_grad():
                report = vae.fit(self.train_data, epochs=self.vae_epochs, seed=self.seed,
                                 progress=self.progress)
        logger.info("deepvid: %s", report)
        self.generator_source = "fitted"
        for d in save_dirs:
            self.policy.call("save_vae", vae.save, os.path.join(d, VAE_FILE))
        return vae

    def _log_vae(self, client: Any, run_id: str) -> None:
        with tempfile.TemporaryDirectory(prefix="deepvid-vae-") as tmp:
            path = os.path.join(tmp, VAE_FILE)
            self.fitted_vae.save(path)
            client.log_artifact(run_id, path, artifact_path=VAE_ARTIFACT_DIR)

    # ---- explaining ---------------------------------------------------------------------------
    @property
    def explainer(self) -> DeepVID:
        if self._explainer is None or self._explainer.generator is not self.generator:
            self._explainer = DeepVID(self.generator, n_neighbours=self.n_neighbours,
                                      radius=self.radius, temperature=self.temperature,
                                      seed=self.seed, batch_size=self.batch_size)
        return self._explainer

    def explain(self, model: Any, step: int) -> list[ExplanationRecord]:
        """The records of every tracked instance at ``step`` (not guarded: see :meth:`run`)."""
        with untouched(model, self.generator):
            return self.explainer.explain(model, self.x, ids=self.ids, labels=self.labels,
                                          class_names=self.class_names, step=step)

    def run(self, model: Any, step: int, sinks: Mapping[str, Sink],
            device: torch.device | None = None, save_dirs: Sequence[str] = (),
            mlflow_targets: Sequence[tuple[Any, str]] = ()) -> list[ExplanationRecord]:
        """Explain at ``step`` and write to every sink, all under the error policy."""
        if not self.prepare(device, save_dirs, mlflow_targets):
            return []
        ok, records = self.policy.call("explain", self.explain, model, step)
        if not ok:
            return []
        self.write(records, step, sinks)
        self.last_step = step
        self.written_steps.append(step)
        return records

    def write(self, records: Sequence[ExplanationRecord], step: int,
              sinks: Mapping[str, Sink]) -> None:
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
        state: dict[str, Any] = {"version": _STATE_VERSION, "last_step": self.last_step,
                                 "ids": list(self.ids), "failures": dict(self.policy.failures)}
        if self.fitted_vae is not None:
            # The VAE travels with the checkpoint: a resumed run gets the same neighbours.
            state["vae"] = {"config": dict(vars(self.fitted_vae.config)),
                            "state_dict": {k: v.detach().cpu().clone()
                                           for k, v in self.fitted_vae.state_dict().items()}}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or "version" not in state:
            raise TypeError(f"state: expected a dict from state_dict(), got {type(state).__name__}")
        if int(state["version"]) > _STATE_VERSION:
            raise ValueError(f"state: version {state['version']} is newer than this "
                             f"deepvid-plugin reads ({_STATE_VERSION}); upgrade deepvid-plugin")
        if list(state.get("ids", self.ids)) != self.ids:
            raise ValueError(f"state: it tracks instances {list(state['ids'])}, this callback "
                             f"tracks {self.ids}; resume with the same instances")
        self.last_step = state.get("last_step")
        self.policy.failures.update(state.get("failures", {}))
        vae_state = state.get("vae")
        if vae_state is not None and self.generator_source != "given":
            with preserved_rng():  # building the modules draws initial weights
                vae = VAE(**vae_state["config"])
            vae.load_state_dict(vae_state["state_dict"])
            vae.eval()
            self.generator = self.fitted_vae = vae
            self.generator_source = "checkpoint"


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
    """Explain ``instances`` with DeepVID every ``every_n_epochs`` epochs of a training loop.

    Args:
        model: the classifier (a ``torch.nn.Module`` returning logits).
        instances: the tracked images, a ``(K, C, H, W)`` tensor in the model's input space, or
            a dataset (e.g. ``torch.utils.data.Subset`` of the test set; labels and ids are then
            taken from it).
        ids, labels, class_names: optional; ``K`` ids (default ``"0".."K-1"`` or the subset
            indices), ``K`` true class indices, the class names.
        generator: a fitted generator (a :class:`~deepvid_plugin.explain.VAE` or anything with
            ``encode``/``decode``); or ``train_data`` (a tensor or DataLoader) to fit a VAE on,
            once, before the first explanation (``vae_epochs`` epochs, with a progress bar). That
            VAE is saved next to the logs and reused when the run is resumed.
        every_n_epochs: explain at epochs 0, N, 2N, ...
        n_neighbours, radius, temperature, seed, batch_size: DeepVID settings
            (:class:`~deepvid_plugin.explain.DeepVID`).
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
                 class_names: Sequence[str] | None = None, generator: Any = None,
                 train_data: Any = None, vae_epochs: int = 30, every_n_epochs: int = 1,
                 n_neighbours: int = 512, radius: Any = 0.5, temperature: float = 2.0,
                 seed: int = 0, batch_size: int = 512, logdir: Any = None,
                 mlflow: bool | str | None = None, tracking_uri: str | None = None,
                 sinks: Sequence[Sink] | None = None, on_error: str = "warn",
                 progress: bool = True):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module returning logits, got "
                            f"{type(model).__name__}")
        self.model = model
        self.explanations = Explanations(
            instances, ids=ids, labels=labels, class_names=class_names, generator=generator,
            train_data=train_data, vae_epochs=vae_epochs, every_n_epochs=every_n_epochs,
            n_neighbours=n_neighbours, radius=radius, temperature=temperature, seed=seed,
            batch_size=batch_size, on_error=on_error, progress=progress)
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
        self._last_records: list[ExplanationRecord] = []

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

        from deepvid_plugin.mlflow.logging import MLflowSink

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
        """kind -> how many times it failed (``'mlflow.write'``, ``'explain'``, ...)."""
        return dict(self.explanations.policy.failures)

    @property
    def last_records(self) -> list[ExplanationRecord]:
        """What the last explained epoch produced."""
        return list(self._last_records)

    def prepare(self) -> bool:
        """Fit (or load) the VAE now rather than at the first explanation; optional."""
        return self.explanations.prepare(module_device_dtype(self.model)[0], self._save_dirs,
                                         self._mlflow_targets)

    def on_epoch_end(self, epoch: int) -> list[ExplanationRecord]:
        """Explain and log at ``epoch`` (the TensorBoard/MLflow step) when it is due.

        Returns the records written (empty when the epoch is not due, or after a failure that
        ``on_error='warn'`` let pass).
        """
        epoch = _check_int("epoch", epoch, 0)
        if self._closed:
            raise RuntimeError("DeepVIDCallback.on_epoch_end: the callback is closed")
        if not self.explanations.due(epoch):
            return []
        records = self.explanations.run(self.model, epoch, self.sinks,
                                        module_device_dtype(self.model)[0], self._save_dirs,
                                        self._mlflow_targets)
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
        """What a resumed run needs: the last step logged and the fitted VAE (if any)."""
        return self.explanations.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.explanations.load_state_dict(state)
