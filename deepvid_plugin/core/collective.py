"""The ranks that share an explanation under DDP, and the few collectives they need, on
``torch.distributed`` (any backend: gloo on CPUs, NCCL on GPUs).

A :class:`Group` is what a callback hands an explainer that shares its own work over the ranks
(``sharding = "collective"``, see :mod:`deepvid_plugin.core.explainer`), and what the callbacks
use to gather records on rank zero.

**No rank is left waiting.** A collective blocks until every rank reaches it, so a rank that
fails before a collective would leave the others waiting forever. :meth:`Group.exchange` runs
the failure-prone local part under a catch, then exchanges the outcome *with* the result: every
rank reaches the collective, and then every rank raises when any of them failed (the failing
rank its own exception, the others a :class:`RankFailed` naming it). Code between collectives
must go through ``exchange`` (or :meth:`Group.check`), or be deterministic computation on
values every rank holds (which then fails everywhere alike).

Object collectives pickle, inside torch, what the ranks of one job send each other; records
travel as their own pickle-free bytes (:meth:`deepvid_plugin.core.record.Record.encode`). With
NCCL, torch moves the pickled bytes through ``torch.cuda.current_device()``, which DDP set-ups
(Lightning, ``torchrun`` scripts) set to the rank's GPU.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class RankFailed(RuntimeError):
    """Another rank failed during a shared step; this rank stops that step too."""


@dataclasses.dataclass(frozen=True)
class Group:
    """This process's place among the ranks that share the explanations.

    Attributes:
        rank: this process's rank in ``group`` (0 writes).
        world_size: how many ranks share the work.
        group: the ``torch.distributed`` process group (None: the default group).
    """

    rank: int
    world_size: int
    group: Any = None

    @classmethod
    def current(cls, group: Any = None) -> Group | None:
        """The group of an initialised ``torch.distributed`` run with more than one rank, else
        None (one process does all the work)."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return None
        world = dist.get_world_size(group)
        return cls(dist.get_rank(group), world, group) if world > 1 else None

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous, balanced share of ``n`` items (ranks in order cover
        ``range(n)`` in order, so concatenating their results keeps the order)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    # ---- checked steps ---------------------------------------------------------------------
    def exchange(self, fn: Callable[..., T], *args: Any) -> list[T]:
        """``fn(*args)`` on every rank, and every rank's result, in rank order; raises on every
        rank when it failed on any (see the module docstring)."""
        value, error = _attempt(fn, *args)
        outcomes = self.all_gather((_describe(error), None if error else value))
        self._raise_if_failed(error, [o[0] for o in outcomes])
        return [o[1] for o in outcomes]

    def check(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` here, then only its success is exchanged (the result stays local, e.g.
        for a tensor collective next); raises on every rank when it failed on any."""
        value, error = _attempt(fn, *args)
        self._raise_if_failed(error, self.all_gather(_describe(error)))
        return value  # type: ignore[return-value]

    def _raise_if_failed(self, error: BaseException | None, described: Sequence[str | None]
                         ) -> None:
        if error is not None:
            raise error
        failed = [(r, d) for r, d in enumerate(described) if d is not None]
        if failed:
            rank, what = failed[0]
            raise RankFailed(f"rank {rank} of {self.world_size} failed: {what}")

    # ---- plain collectives -------------------------------------------------------------------
    def all_gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj, group=self.group)
        return out

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank zero (in rank order); None elsewhere."""
        out: list[Any] | None = [None] * self.world_size if self.is_zero else None
        torch.distributed.gather_object(obj, out, dst=self._global(0), group=self.group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank zero's ``obj`` on every rank (what the others pass is ignored)."""
        box = [obj if self.is_zero else None]
        torch.distributed.broadcast_object_list(box, src=self._global(0), group=self.group)
        return box[0]

    def reduce_sum_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum ``tensors`` (same shapes on every rank) into rank zero's, in place."""
        for t in tensors:
            torch.distributed.reduce(t, dst=self._global(0), group=self.group)

    def _global(self, rank: int) -> int:
        if self.group is None:
            return rank
        return torch.distributed.get_global_rank(self.group, rank)


def _attempt(fn: Callable[..., T], *args: Any) -> tuple[T | None, Exception | None]:
    try:
        return fn(*args), None
    except Exception as e:  # re-raised by the caller after the exchange, never swallowed
        return None, e


def _describe(error: BaseException | None) -> str | None:
    if error is None:
        return None
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(error).__name__}: {error}{where}"


__all__ = ["Group", "RankFailed"]
