"""Small, fast workloads and TensorBoard read-back for the callback tests."""

from __future__ import annotations

import os

import torch
from torch import nn

from deepvid_plugin.demo.digits import DigitsCNN, load_digits

N_TRAIN = 256  # a slice of the digits: every test here trains in seconds on 2 cores
N_NEIGHBOURS = 64
_DIGITS = None


def digits():
    global _DIGITS
    if _DIGITS is None:
        _DIGITS = load_digits()
    return _DIGITS


def train_slice():
    d = digits()
    return d.x_train[:N_TRAIN], d.y_train[:N_TRAIN]


def tracked(k: int = 4):
    d = digits()
    return d.x_test[:k], d.y_test[:k]


def small_cnn(seed: int = 0) -> nn.Module:
    """DigitsCNN (BatchNorm + Dropout) at a quarter of the width."""
    torch.manual_seed(seed)
    return DigitsCNN(width=8)


def fitted_vae(epochs: int = 2):
    """A quickly fitted VAE (its quality does not matter to these tests, its determinism does)."""
    from deepvid_plugin.explain import VAE

    x, _ = train_slice()
    torch.manual_seed(0)
    vae = VAE.for_data(x)
    vae.fit(x, epochs=epochs, progress=False)
    return vae


def assert_same_state(a: dict, b: dict, what: str) -> None:
    """Bitwise equality of two (nested) state dicts."""
    assert a.keys() == b.keys(), what
    assert a, f"{what}: empty state"
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            assert_same_state(x, y, f"{what}.{k}")
        elif isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), f"{what}.{k}"
        else:
            assert x == y, f"{what}.{k}: {x!r} != {y!r}"


def optimizer_state(opt) -> dict:
    sd = opt.state_dict()
    return {"state": {str(k): v for k, v in sd["state"].items()},
            "groups": {str(i): {k: v for k, v in g.items()} for i, g in
                       enumerate(sd["param_groups"])}}


def data_provider(logdir):
    """TensorBoard's own data provider over ``logdir``, keeping every deepvid sample."""
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    mux = EventMultiplexer(tensor_size_guidance={"deepvid": 0})
    mux.AddRunsFromDirectory(os.fspath(logdir))
    mux.Reload()
    return MultiplexerDataProvider(mux, os.fspath(logdir))


def summary_steps(logdir) -> dict[str, dict[str, list[int]]]:
    """run -> instance id -> every step written for it, duplicates included, sorted.

    Sorted because the order across event files is not the order they were written in: TensorBoard
    sorts their names as strings, so a resumed run's ``...<pid>.10`` file is read before its
    ``...<pid>.9`` file when both were opened in the same second (the readers sort by step)."""
    from tensorboard import context as tb_context
    from tensorboard.data import provider

    from deepvid_plugin.tensorboard import metadata

    dp = data_provider(logdir)
    ctx = tb_context.RequestContext()
    listing = dp.list_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    out: dict[str, dict[str, list[int]]] = {}
    for run, tags in listing.items():
        parsed = {t: metadata.parse(t) for t in tags}
        wanted = {t: info.subject for t, info in parsed.items()
                  if info and info.kind == "deepvid" and info.role == metadata.ROLE_SUMMARY}
        data = dp.read_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME,
                               downsample=10**9,
                               run_tag_filter=provider.RunTagFilter(runs=[run],
                                                                    tags=list(wanted)))[run]
        out[run] = {wanted[t]: sorted(d.step for d in data[t]) for t in wanted}
    return out


def kind_steps(logdir, kind: str) -> dict[str, dict[str, list[int]]]:
    """run -> subject -> every step of ``kind`` written for it, duplicates included, sorted (see
    :func:`summary_steps`)."""
    from tensorboard import context as tb_context
    from tensorboard.data import provider

    from deepvid_plugin.tensorboard import metadata

    dp = data_provider(logdir)
    ctx = tb_context.RequestContext()
    listing = dp.list_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    out: dict[str, dict[str, list[int]]] = {}
    for run, tags in listing.items():
        wanted = {t: metadata.parse(t).subject for t in tags if metadata.parse(t)
                  and metadata.parse(t).kind == kind
                  and metadata.parse(t).role == metadata.ROLE_SUMMARY}
        if not wanted:
            continue
        data = dp.read_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME,
                               downsample=10**9,
                               run_tag_filter=provider.RunTagFilter(runs=[run],
                                                                    tags=list(wanted)))[run]
        out[run] = {wanted[t]: sorted(d.step for d in data[t]) for t in wanted}
    return out


def records(logdir, run: str, instance: str, step: int, kind: str = "deepvid"):
    from deepvid_plugin.tensorboard.store import DataProviderStore

    return DataProviderStore(data_provider(logdir)).record(run, instance, step, kind=kind)


class ListSink:
    """A real in-memory Sink: keeps every record it is given, as envelopes."""

    def __init__(self):
        self.written = []  # (kind, subject, step)
        self.records = []
        self.flushes = 0
        self.closed = False

    def write(self, record, step):
        from deepvid_plugin.core import kinds

        _, env = kinds.prepare(record)  # what a real sink does first: validate by kind
        self.records.append(env)
        self.written.append((env.kind, env.subject, int(step)))

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed = True

    def steps(self, kind: str) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for k, subject, step in self.written:
            if k == kind:
                out.setdefault(subject, []).append(step)
        return out
