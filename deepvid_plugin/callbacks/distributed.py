"""Explanations under DDP: every rank explains its share, rank zero gathers and alone writes.

One mechanism for every kind, driven by each explainer's ``sharding``
(:func:`deepvid_plugin.core.explainer.sharding_of`):

- ``"instances"``: each rank is prepared with a context holding its contiguous share of the
  tracked instances (:meth:`Group.shard`), explains it, and sends its records, encoded as the
  records' own pickle-free bytes, to rank zero, which decodes them in rank order: the order of
  the instances. Per-instance kinds compute each instance on its own, so the records are those
  of a one-process run.
- ``"collective"``: every rank explains with ``context.group`` and shares the work itself
  (Network Dissection's probe images, Summit's per-class images); rank zero's records are kept.
- ``"rank_zero"``: rank zero explains, the others only learn whether it worked.

**Preparing.** Rank zero prepares first; its ``state_dict()`` is broadcast and loaded on every
other rank before they prepare: a VAE fitted in ``prepare`` is fitted once, on rank zero, and
every rank then holds the same generator.

**Failures are seen by all.** Every local step runs under a catch, the outcomes are exchanged
(one ``all_gather`` of short descriptions per step), and every rank then applies the callback's
error policy to the same outcomes: a kind that failed on any rank is counted as failed on every
rank (warned about, or raised with ``on_error='raise'``), is not marked done anywhere, and is
retried at its next due epoch everywhere. So the ranks' schedules, and so their collectives,
never diverge, and no rank waits for one that gave up.

Rank zero then writes, and tells the others whether that worked (with ``on_error='raise'`` a
failed write raises on every rank, not only on rank zero). Per explained epoch the ranks meet
three times (the outcomes, the gather of records to rank zero, the outcome of the writing),
plus whatever collective explainers exchange; measured in ``benchmarks/bench_ddp.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from deepvid_plugin.callbacks.safety import ErrorPolicy
from deepvid_plugin.core import kinds
from deepvid_plugin.core.collective import Group, RankFailed
from deepvid_plugin.core.explainer import ExplainContext, Explainer, sharding_of
from deepvid_plugin.core.record import Record

__all__ = ["Gathered", "Group", "assemble", "context_for", "explain", "on_rank_zero", "prepare",
           "resolve_group"]


def resolve_group(distributed: Any) -> Group | None:
    """The ranks a callback shares its work with: ``None`` (auto: an initialised
    ``torch.distributed`` run with several ranks), ``True`` (one is required), ``False`` (this
    process explains everything alone) or a ``torch.distributed`` process group."""
    if distributed is None or distributed is False:
        return None if distributed is False else Group.current()
    if distributed is True:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("distributed: expected an initialised torch.distributed process "
                             "group with distributed=True (call torch.distributed."
                             "init_process_group first, or leave distributed=None), got none")
        return Group.current()
    if isinstance(distributed, bool) or not _is_process_group(distributed):
        raise TypeError(f"distributed: expected None (auto), True, False or a torch.distributed "
                        f"ProcessGroup, got {type(distributed).__name__}")
    return Group.current(distributed)


def _is_process_group(obj: Any) -> bool:
    dist = torch.distributed
    return dist.is_available() and isinstance(obj, dist.ProcessGroup)


def context_for(explainer: Explainer, context: ExplainContext, group: Group) -> ExplainContext:
    """What ``explainer`` is prepared with on this rank (see the module docstring)."""
    mode = sharding_of(explainer)
    if mode == "instances":
        mine = group.shard(len(context.ids))
        part = slice(mine.start, mine.stop)
        return dataclasses.replace(
            context, x=context.x[part], ids=context.ids[part],
            labels=None if context.labels is None else context.labels[part],
            label_sets=None if context.label_sets is None else context.label_sets[part])
    if mode == "collective":
        return dataclasses.replace(context, group=group)
    return context


def prepare(explainers: Sequence[Explainer], context: ExplainContext, group: Group,
            policy: ErrorPolicy, prepared: set[str]) -> list[Explainer]:
    """Prepare ``explainers`` on every rank (rank zero first, its state loaded by the others);
    the ready ones, the same list on every rank. ``prepared`` (kinds) is updated."""
    ready = []
    for e in explainers:
        if e.kind in prepared:
            ready.append(e)
            continue
        if e.kind in policy.disabled:  # the same set on every rank: every failure is counted
            continue
        ctx = context_for(e, context, group)
        state, error = None, None
        if group.is_zero:
            state, error = _attempt(_prepare_zero, e, ctx)
        first_error, state = group.broadcast((_describe(error), state))
        if not group.is_zero and first_error is None:
            _, error = _attempt(_prepare_other, e, state, ctx)
        outcomes = group.all_gather(_describe(error))
        ok, _ = policy.call(f"{e.kind}.prepare", _settle, error, outcomes, group, owner=e.kind)
        if ok:
            prepared.add(e.kind)
            ready.append(e)
    return ready


def _prepare_zero(e: Explainer, ctx: ExplainContext) -> Mapping[str, Any]:
    e.prepare(ctx)
    return e.state_dict()


def _prepare_other(e: Explainer, state: Mapping[str, Any], ctx: ExplainContext) -> None:
    e.load_state_dict(state)
    e.prepare(ctx)


def explain(explainers: Sequence[Explainer], model: Any, step: int, group: Group,
            policy: ErrorPolicy, n_instances: int) -> tuple[list[Gathered], list[Explainer]]:
    """Run ``explainers`` on every rank; returns (on rank zero, what each explainer that worked
    gave, in order: :func:`assemble` turns it into the records a one-process run gives; the
    explainers that worked on every rank, the same list everywhere)."""
    mine = len(group.shard(n_instances))
    local: list[tuple[Explainer, str, Any, Exception | None]] = []
    for e in explainers:
        mode = sharding_of(e)
        runs_here = (mode == "collective" or (mode == "instances" and mine > 0)
                     or (mode == "rank_zero" and group.is_zero))
        got, error = ([], None)
        if runs_here:
            got, error = _attempt(_explain_local, e, model, step, mode, group)
        local.append((e, mode, got, error))
    outcomes = group.all_gather([_describe(error) for *_, error in local])
    worked = [all(o[i] is None for o in outcomes) for i in range(len(local))]
    # Records of per-instance kinds travel to rank zero; everything else stays where it is.
    sent = [got if ok and mode == "instances" and not group.is_zero else None
            for (_, mode, got, _), ok in zip(local, worked, strict=True)]
    received = group.gather(sent)
    gathered: list[Gathered] = []
    ran: list[Explainer] = []
    for i, (e, mode, got, error) in enumerate(local):
        ok, _ = policy.call(f"{e.kind}.explain", _settle, error, [o[i] for o in outcomes], group,
                            owner=e.kind)
        if not ok:
            continue
        ran.append(e)
        if group.is_zero:  # rank zero's own share (or the whole result), then the others'
            others = ([received[r][i] for r in range(1, group.world_size)]
                      if mode == "instances" and received is not None else [])
            gathered.append(Gathered(e.kind, got, others))
    return gathered, ran


@dataclasses.dataclass
class Gathered:
    """One explainer's result on rank zero: its own records and the other ranks' encoded ones."""

    kind: str
    own: list[Any]
    others: list[Sequence[bytes] | None]


def assemble(gathered: Sequence[Gathered], policy: ErrorPolicy) -> list[Any]:
    """The records, in rank order within each kind (the instances' order); the other ranks'
    decoded to the typed views a one-process run returns."""
    records: list[Any] = []
    for g in gathered:
        records.extend(g.own)
        for payload in g.others:
            policy.call(f"{g.kind}.gather", _decode_into, records, payload, owner=g.kind)
    return records


def on_rank_zero(group: Group, fn: Any) -> Any:
    """``fn()`` on rank zero (its writing), then its outcome on every rank: when it raised (the
    error policy lets a failure raise with ``on_error='raise'``), every rank raises, instead of
    the others going on into training collectives that rank zero will never join."""
    value, error = _attempt(fn) if group.is_zero else (None, None)
    failed = group.broadcast(_describe(error))
    if error is not None:
        raise error
    if failed is not None:
        raise RankFailed(f"rank 0 of {group.world_size} failed: {failed}")
    return value


def _explain_local(e: Explainer, model: Any, step: int, mode: str, group: Group) -> list[Any]:
    got = list(e.explain(model, step))
    if mode == "instances" and not group.is_zero:
        # encoded here, inside the catch: a record that cannot be encoded fails this rank's step
        return [kinds.as_record(r).encode() for r in got]
    if mode == "collective" and not group.is_zero:
        return []  # rank zero holds the complete result
    return got


def _decode_into(out: list[Any], payload: Sequence[bytes] | None) -> None:
    if payload is None:
        raise RuntimeError("gather: a rank that explained sent no records")
    out.extend(kinds.view(Record.decode(b)) for b in payload)


def _attempt(fn: Any, *args: Any) -> tuple[Any, Exception | None]:
    try:
        return fn(*args), None
    except Exception as e:  # settled by the error policy on every rank, never swallowed
        return None, e


def _describe(error: Exception | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def _settle(error: Exception | None, outcomes: Sequence[str | None], group: Group) -> None:
    """Raise this rank's own failure, else another rank's; nothing when every rank worked."""
    if error is not None:
        raise error
    for rank, what in enumerate(outcomes):
        if what is not None:
            raise RankFailed(f"rank {rank} of {group.world_size} failed: {what}")
