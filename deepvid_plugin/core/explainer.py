"""The explainer protocol: what a training-loop callback runs, one explainer per kind.

An explainer implements one explanation kind (``deepvid``, ``gradcam``, ...)::

    kind: str                      # the registered kind of the records it returns
    every_n_epochs: int            # explained at epochs 0, N, 2N, ...
    prepare(context) -> None       # once, before the first explanation (fit a VAE, cache ...)
    explain(model, step) -> list   # the records of this step (Record or the kind's typed view)
    state_dict() -> dict           # what a resumed run needs (tensors and plain values only)
    load_state_dict(state) -> None

Optionally ``check(x)``: fail early (in the callback's ``__init__``) when this explainer cannot
explain such instances; and ``check_model(model, x)``: fail early with the model at hand (resolve
the layers, run one forward on a tracked instance, check a generator's shape), called by the
callbacks with the model on its device and the tracked instances, before anything is fitted.

**Under DDP** (an initialised ``torch.distributed`` run with several ranks) every rank runs the
callback, and each explainer's optional ``sharding`` says how its work divides (the default
follows the kind's registered subject, see :func:`sharding_of`):

- ``"instances"`` (default for kinds whose subject is an instance): the context holds only this
  rank's share of the tracked instances (``x``, ``ids``, ``labels``), the explainer explains
  those as it would all of them, and the callback gathers the records on rank zero, which alone
  writes. The explainer needs to know nothing about ranks; its records must not depend on which
  other instances it explains (per-instance seeds and computations), so that any number of
  ranks logs what one process logs.
- ``"collective"``: the explainer shares its own work (probe images, per-class images) over
  ``context.group`` (a :class:`~deepvid_plugin.core.collective.Group`) and returns the complete
  records on rank zero (other ranks may return ``[]``). Every rank calls ``explain``, so its
  collectives must go through ``Group.exchange``/``Group.check`` (a failure on one rank is then
  raised on all of them instead of leaving them waiting).
- ``"rank_zero"`` (default for other kinds): only rank zero explains.

Rank zero is prepared first; its ``state_dict()`` is then loaded on every other rank before
those prepare, so a generator fitted in ``prepare`` (DeepVID's VAE) is fitted once and reaches
every rank.

An *engine* (the method itself, e.g. ``DeepVID``, ``GradCAM``) may offer
``as_explainer(every_n_epochs) -> Explainer``; a callback given a bare engine wraps it that way,
so every kind is built the same way and the callback names none of them.

The callback owns the guard: it calls ``prepare`` and ``explain`` only inside it (every module's
``training`` flag, grad mode and every RNG state restored). An explainer that needs forward hooks
registers them inside ``explain`` and removes them in a ``finally``. It never writes anywhere
itself: its records go to the callback's sinks, and files it must keep (a fitted VAE) go through
``context.artifacts``, which stores them wherever the callback writes (next to the TensorBoard
logs, as MLflow artifacts).

``prepare`` may be called again after it failed (the callback retries at the next due epoch),
and ``load_state_dict`` is called *before* ``prepare`` when a run resumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from deepvid_plugin.core.collective import Group

__all__ = ["SHARDING", "Artifacts", "ExplainContext", "Explainer", "NoArtifacts", "is_explainer",
           "sharding_of"]

#: how an explainer's work divides over DDP ranks (see the module docstring).
SHARDING = ("instances", "collective", "rank_zero")


@runtime_checkable
class Artifacts(Protocol):
    """Where an explainer keeps files across runs (the callback implements it over its targets).

    ``find(name)``: a local path of a file ``name`` saved by an earlier run, or None.
    ``save(name, write, folder)``: ``write(path)`` creates the file; it is stored everywhere the
    callback writes (as ``<logdir>/<name>`` and as the MLflow artifact ``<folder>/<name>``).
    """

    def find(self, name: str) -> str | None: ...

    def save(self, name: str, write: Callable[[str], None], folder: str) -> None: ...


class NoArtifacts:
    """Nowhere to keep files (an explainer used without a callback, or with sinks only)."""

    def find(self, name: str) -> str | None:
        return None

    def save(self, name: str, write: Callable[[str], None], folder: str) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class ExplainContext:
    """What every explainer is prepared with.

    Attributes:
        x: the tracked instances ``(K, C, H, W)``, float32 on the CPU (the callback's own copy).
        ids: ``K`` unique instance ids.
        labels: ``K`` true class indices, or None.
        label_sets: for multi-hot (multi-label) labels, each instance's true classes (``labels``
            is then None); None otherwise.
        class_names: the class names, or None (explainers then use ``"0".."n-1"``).
        device: where the model lives (explainers put their own modules there).
        artifacts: where files that must outlive the run are kept.
        progress: whether long preparations (fitting a VAE) may show a progress bar.
        group: under DDP, for explainers with ``sharding = "collective"``: the ranks to share
            the work with (None in one process, and for other explainers).
    """

    x: torch.Tensor
    ids: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    artifacts: Artifacts = dataclasses.field(default_factory=NoArtifacts)
    progress: bool = True
    label_sets: tuple[tuple[int, ...], ...] | None = None
    group: Group | None = None

    def names_for(self, n_classes: int) -> list[str]:
        """The class names, or ``"0".."n_classes-1"`` when none were given."""
        if self.class_names is None:
            return [str(i) for i in range(n_classes)]
        return list(self.class_names)


@runtime_checkable
class Explainer(Protocol):
    """One explanation kind, run by a callback (see the module docstring)."""

    kind: str
    every_n_epochs: int

    def prepare(self, context: ExplainContext) -> None: ...

    def explain(self, model: torch.nn.Module, step: int) -> Sequence[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def is_explainer(obj: Any) -> bool:
    """Whether ``obj`` implements :class:`Explainer` (a str ``kind``, an int
    ``every_n_epochs`` and the four methods)."""
    return (isinstance(obj, Explainer) and isinstance(getattr(obj, "kind", None), str)
            and isinstance(getattr(obj, "every_n_epochs", None), int))


def sharding_of(explainer: Any) -> str:
    """How ``explainer``'s work divides over DDP ranks: its own ``sharding`` if it declares one,
    else ``"instances"`` for kinds registered with an instance subject and ``"rank_zero"`` for
    any other (a kind that is not registered explains on rank zero only)."""
    declared = getattr(explainer, "sharding", None)
    if declared is not None:
        if declared not in SHARDING:
            raise ValueError(f"{type(explainer).__name__}.sharding: expected one of "
                             f"{list(SHARDING)}, got {declared!r}")
        return declared
    from deepvid_plugin.core import kinds

    try:
        subject = kinds.get(explainer.kind).subject
    except (KeyError, ValueError):
        return "rank_zero"
    return "instances" if subject == "instance" else "rank_zero"
