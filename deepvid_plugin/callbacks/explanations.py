"""*What* a callback explains: the tracked instances and the explainers (one per kind), each on
its own schedule, run inside one guard that leaves the user's training as it was. Framework-free:
the plain-loop, Lightning and HuggingFace callbacks share it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from deepvid_plugin.callbacks import distributed
from deepvid_plugin.callbacks.instances import load_instances
from deepvid_plugin.callbacks.safety import DeepVIDWarning, ErrorPolicy, check_on_error
from deepvid_plugin.core import checks
from deepvid_plugin.core.collective import Group
from deepvid_plugin.core.explainer import ExplainContext, Explainer, is_explainer
from deepvid_plugin.core.guard import frozen_eval, module_device_dtype, preserved_rng
from deepvid_plugin.core.outputs import logits_of
from deepvid_plugin.core.sink import Sink
from deepvid_plugin.methods.alert.monitor import AlertMonitor
from deepvid_plugin.methods.deepvid.engine import DeepVID
from deepvid_plugin.methods.deepvid.explainer import (
    DEFAULT_VAE_EPOCHS,
    DEFAULTS,
    DeepVIDExplainer,
)

logger = logging.getLogger("deepvid_plugin.callbacks")

#: 2: one entry per explainer kind (``explainers``); 1 (DeepVID only) is still read.
_STATE_VERSION = 2
#: the DeepVID shortcut's settings and their defaults (the callbacks' signatures show them).
_SHORTCUT_DEFAULTS = {**DEFAULTS, "vae_epochs": DEFAULT_VAE_EPOCHS}


def _is_default(name: str, value: Any) -> bool:
    default = _SHORTCUT_DEFAULTS[name]
    return value is None or (type(value) in (int, float) and value == default)


@contextlib.contextmanager
def untouched(*modules: Any) -> Iterator[None]:
    """Everything the callback does happens in here: RNGs, training flags and grad mode are put
    back exactly as they were, whatever happens inside (the engine guards itself too; this is
    the callback's own guarantee, covering VAE fitting and device moves as well)."""
    roots = [r for mod in modules for r in (mod, getattr(mod, "wrapped", None))]  # a ModelView's
    flags = [(m, m.training) for mod in roots if isinstance(mod, torch.nn.Module)
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
    DeepVID settings) first, then ``explainers``, where a bare engine (anything with
    ``as_explainer(every_n_epochs)``, see :mod:`deepvid_plugin.core.explainer`) is wrapped in its
    explainer with the callback's ``every_n_epochs``.
    """
    every = checks.integer("every_n_epochs", every_n_epochs, 1)
    if explainers is not None and (isinstance(explainers, (str, bytes))
                                   or not isinstance(explainers, Sequence)):
        raise TypeError(f"explainers: expected a list of explainers or engines, got "
                        f"{type(explainers).__name__}")
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
        if not is_explainer(item) and callable(getattr(item, "as_explainer", None)):
            item = item.as_explainer(every_n_epochs=every)  # a bare engine: any kind's
        if not is_explainer(item):
            raise TypeError(f"explainers: expected explainers (kind, every_n_epochs, prepare, "
                            f"explain, state_dict, load_state_dict) or engines with "
                            f"as_explainer() (DeepVID, GradCAM, NetDissect, Summit), got "
                            f"{type(item).__name__}")
        out.append(item)
    kinds = [e.kind for e in out]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"explainers: expected one explainer per kind (their records would "
                         f"share tags), got kinds {kinds}")
    return out


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
                 on_error: str = "warn", progress: bool = True, step_offset: int = 0,
                 alerts: Any = True, on_alert: Callable[[dict[str, Any]], Any] | None = None):
        self.step_offset = checks.integer("step_offset", step_offset, 0)
        x, found_labels, default_ids = load_instances(instances)
        k = x.shape[0]
        self.x = x
        self.ids = checks.ids(ids, k, default_ids)
        self.class_names = checks.class_names(class_names)
        n_classes = len(self.class_names) if self.class_names is not None else None
        self._raw_labels = labels if labels is not None else found_labels
        # K class indices, or a (K, n_classes) multi-hot matrix (multi-label) as label sets
        self.labels, self.label_sets = checks.labels_or_sets(self._raw_labels, k, n_classes)
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
        self.monitor = _monitor(alerts)
        if on_alert is not None and not callable(on_alert):
            raise TypeError(f"on_alert: expected a callable taking an alert dict, got "
                            f"{type(on_alert).__name__}")
        self.on_alert = on_alert
        self.last_steps: dict[str, int | None] = {e.kind: None for e in self.explainers}
        self.written_steps: list[int] = []  # steps explained and handed to the sinks, this process
        self._prepared: set[str] = set()
        self._warned_backwards = False
        #: under DDP, the ranks that share the work (set by the callback); None: one process
        self.group: Group | None = None

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

    # ---- the early check ----------------------------------------------------------------------
    def check_model(self, model: torch.nn.Module) -> int:
        """One probe forward of the tracked instances (model on its device), before anything is
        fitted: the output must hold logits, labels and ``class_names`` must fit them, and every
        explainer's ``check_model(model, x)`` runs (layers, generator shapes). Returns the
        number of classes. Leaves the model as found."""
        device, dtype = module_device_dtype(model)
        k = self.x.shape[0]
        with self._guard(model), frozen_eval(model):
            try:
                out = model(self.x.to(device, dtype))
            except NotImplementedError as e:
                inner = getattr(model, "wrapped", model)
                raise ValueError(
                    f"model: expected a forward() that returns the logits, but "
                    f"{type(inner).__name__} has none ({e}); pass forward_fn=lambda module, x: "
                    f"module.net(x) (whatever your training_step calls)") from e
            n_classes = logits_of(out, n=k).shape[1]
            checks.class_names(self.class_names, n_classes)
            self.labels, self.label_sets = checks.labels_or_sets(self._raw_labels, k, n_classes)
            if self.label_sets is not None:
                for e in self.explainers:
                    outputs = getattr(e, "outputs", None)
                    if outputs is not None and outputs != "sigmoid":
                        raise ValueError(
                            f"explainers: multi-hot labels (a multi-label model) need every "
                            f"explainer that reads labels to treat classes as independent, "
                            f"outputs='sigmoid'; got {e.kind} with outputs={outputs!r}")
            for e in self.explainers:
                check = getattr(e, "check_model", None)
                if callable(check):
                    check(model, self.x)
        return n_classes

    # ---- schedule -----------------------------------------------------------------------------
    def step(self, epoch: int) -> int:
        """The TensorBoard/MLflow step of ``epoch``: ``epoch + step_offset``."""
        return checks.integer("epoch", epoch, 0) + self.step_offset

    def due(self, epoch: int) -> list[Explainer]:
        """The explainers due at ``epoch``: each at its epochs 0, N, 2N, ... (the first epoch
        shows the early reasoning), and never twice: a step at or below one already logged is
        skipped (a resumed run skips what it logged), with one warning that says how to
        continue a timeline whose epoch counter started again."""
        step = self.step(epoch)
        out = []
        for e in self.explainers:
            last = self.last_steps.get(e.kind)
            if epoch % e.every_n_epochs != 0:
                continue
            if last is None or step > last:
                out.append(e)
            elif not self._warned_backwards:
                self._warned_backwards = True
                warnings.warn(
                    f"deepvid: step {step} is at or below the last step logged ({last}), so "
                    f"nothing is logged for it (each step is logged once; a resumed run skips "
                    f"the steps it logged). If the epoch counter started again (a new training "
                    f"stage, fine-tuning), log to a new run, or pass "
                    f"step_offset={self.step_offset + last + 1 - step} to the callback so its "
                    f"steps continue after {last}. Warned once.", DeepVIDWarning, stacklevel=3)
        return out

    def mark_done(self, epoch: int, explainers: Sequence[Explainer]) -> None:
        step = self.step(epoch)
        for e in explainers:
            self.last_steps[e.kind] = step

    # ---- preparing and explaining ------------------------------------------------------------
    def context(self, device: torch.device | None, artifacts: Any) -> ExplainContext:
        return ExplainContext(
            x=self.x, ids=tuple(self.ids),
            labels=None if self.labels is None else tuple(self.labels),
            class_names=None if self.class_names is None else tuple(self.class_names),
            device=torch.device(device or "cpu"), artifacts=artifacts, progress=self.progress,
            label_sets=None if self.label_sets is None else tuple(tuple(s)
                                                                  for s in self.label_sets))

    def _guard(self, model: Any) -> contextlib.AbstractContextManager[None]:
        modules = [getattr(e, "generator", None) for e in self.explainers]
        return untouched(model, *[m for m in modules if isinstance(m, torch.nn.Module)])

    def _prepare(self, explainers: Sequence[Explainer], ctx: ExplainContext) -> list[Explainer]:
        if self.group is not None:
            return distributed.prepare(explainers, ctx, self.group, self.policy, self._prepared)
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

    def run(self, model: Any, epoch: int, sinks: Mapping[str, Sink],
            device: torch.device | None, artifacts: Any,
            due: Sequence[Explainer] | None = None) -> list[Any]:
        """Run the explainers due at ``epoch`` inside one guard, then write every record to
        every sink at its step, all under the error policy. Returns the records written: none
        when no sink took them (the warnings say why).

        Under DDP (:attr:`group` set) every rank must call this at the same epochs: each
        explains its share (:mod:`.distributed`), rank zero gets every record and alone writes;
        other ranks return ``[]``."""
        due = self.due(epoch) if due is None else list(due)
        step = self.step(epoch)
        if self.group is not None:
            return self._run_shared(model, epoch, step, sinks, device, artifacts, due)
        records: list[Any] = []
        ran: list[Explainer] = []
        with self._guard(model):
            for e in self._prepare(due, self.context(device, artifacts)):
                ok, got = self.policy.call(f"{e.kind}.explain", e.explain, model, step,
                                           owner=e.kind)
                if ok:
                    records.extend(got)
                    ran.append(e)
        if not ran:
            return []
        alerts = self._alerts(records, step)
        records.extend(alerts)
        taken = self.write(records, step, sinks)
        self.mark_done(epoch, ran)
        if not taken:
            return []
        self.written_steps.append(step)
        self._tell(alerts, step)
        return records

    def _run_shared(self, model: Any, epoch: int, step: int, sinks: Mapping[str, Sink],
                    device: torch.device | None, artifacts: Any,
                    due: Sequence[Explainer]) -> list[Any]:
        """:meth:`run` under DDP: every rank explains its share, rank zero gathers and writes."""
        group = self.group
        with self._guard(model):
            ready = self._prepare(due, self.context(device, artifacts))
            gathered, ran = distributed.explain(ready, model, step, group, self.policy,
                                                len(self.ids))
        if not ran:
            return []
        self.mark_done(epoch, ran)  # on every rank alike: the schedules never diverge

        def write() -> list[Any]:  # rank zero only
            records = distributed.assemble(gathered, self.policy)
            alerts = self._alerts(records, step)  # the monitor lives on rank zero
            records.extend(alerts)
            if not self.write(records, step, sinks):
                return []
            self.written_steps.append(step)
            self._tell(alerts, step)  # raising here raises on every rank
            return records

        return distributed.on_rank_zero(group, write) or []

    def _alerts(self, records: Sequence[Any], step: int) -> list[Any]:
        """The drift detectors' alert record of this step (none when nothing fired)."""
        if self.monitor is None:
            return []
        ok, got = self.policy.call("alert.observe", self.monitor.observe, records, step,
                                   owner="alert")
        return list(got) if ok else []

    def _tell(self, alerts: Sequence[Any], step: int) -> None:
        # After the write: an alert is stored before the user's hook can stop the training.
        if self.on_alert is not None:
            for rec in alerts:
                for alert in rec.meta["alerts"]:
                    self.on_alert({"step": step, **alert})

    def _buffering(self, name: str, sink: Sink) -> bool:
        """A sink that keeps what it is given until its backend takes it (``reachable()``):
        the policy keeps writing to it while it is switched off (see :mod:`.safety`)."""
        if callable(getattr(sink, "reachable", None)):
            self.policy.buffering.add(name)
            return True
        return False

    def write(self, records: Sequence[Any], step: int, sinks: Mapping[str, Sink]) -> bool:
        """Write ``records`` to every sink at ``step`` and flush; True when at least one sink
        took them (wrote and flushed them, or holds them to send when its backend answers)."""
        taken = False
        for name, sink in sinks.items():
            buffering = self._buffering(name, sink)
            if buffering:
                self.policy.revive(name, sink.reachable)
            for record in records:
                ok, _ = self.policy.call(f"{name}.write", sink.write, record, step, owner=name,
                                         proves=False,  # may only have been buffered
                                         while_off=buffering)
                if not ok:  # the sink is broken this epoch: don't pay its failure per record
                    break
            else:
                flushed, _ = self.policy.call(f"{name}.flush", sink.flush, owner=name)
                taken = taken or flushed or buffering  # a buffering sink holds them on disk
        return taken

    def close(self, sinks: Mapping[str, Sink]) -> None:
        for name, sink in sinks.items():
            buffering = self._buffering(name, sink)
            if buffering:
                self.policy.revive(name, sink.reachable)
            self.policy.call(f"{name}.close", sink.close, owner=name, while_off=buffering)

    # ---- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loads with ``torch.load(weights_only=True)``)."""
        return {"version": _STATE_VERSION, "last_step": self.last_step, "ids": list(self.ids),
                "failures": dict(self.policy.failures),
                "explainers": {e.kind: {"last_step": self.last_steps[e.kind],
                                        "state": e.state_dict()} for e in self.explainers},
                "alerts": None if self.monitor is None else self.monitor.state_dict()}

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
        if self.monitor is not None and state.get("alerts"):
            self.monitor.load_state_dict(state["alerts"])
        self.policy.failures.update(state.get("failures", {}))


def _monitor(alerts: Any) -> AlertMonitor | None:
    """``alerts``: True (every detector), False/None (none), a list of detector names, or an
    :class:`AlertMonitor`."""
    if alerts is True:
        return AlertMonitor()
    if alerts is False or alerts is None:
        return None
    if isinstance(alerts, AlertMonitor):
        return alerts
    if isinstance(alerts, (list, tuple)):
        return AlertMonitor(alerts)
    raise TypeError(f"alerts: expected True, False, a list of detector names or an "
                    f"AlertMonitor, got {type(alerts).__name__}")


__all__ = ["Explanations", "build_explainers", "untouched"]
