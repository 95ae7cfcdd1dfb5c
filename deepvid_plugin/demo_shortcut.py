"""`deepvid demo` (``--data shapes``, the default): find a shortcut with every kind.

Two runs train the same small CNN on the same shapes (:mod:`deepvid_plugin.shortcut`) and track the
same test instances under the same ids: a **clean** run, whose corner marker is random, and a
**shortcut** run, whose marker colour gives the label away in training (random at test time). Each
run is explained at every epoch with DeepVID and Grad-CAM, and every few epochs with Network
Dissection and Summit, into ``OUT/runs/<run>`` (TensorBoard) and ``OUT/mlflow.db`` (MLflow). The
demo then measures where the shortcut shows (test accuracy, the maps' mass on the marker, colour
detectors, the marker's class in Summit) and prints where to look.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Any

import numpy as np

RUNS = ("clean", "shortcut")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big the demo is (``--quick`` shrinks it for tests)."""

    n_train: int
    n_test: int
    epochs: int
    instances: int
    neighbours: int
    vae_epochs: int
    probe: int
    every: int  # Network Dissection and Summit run every this many epochs (and at the last)


FULL = Sizes(n_train=2000, n_test=500, epochs=12, instances=8, neighbours=256, vae_epochs=6,
             probe=300, every=4)
QUICK = Sizes(n_train=400, n_test=120, epochs=2, instances=4, neighbours=64, vae_epochs=1,
              probe=120, every=1)


@dataclasses.dataclass(frozen=True)
class Measured:
    """What one run shows (see :func:`measure`)."""

    run: str
    test_accuracy: float
    train_accuracy: float
    gradcam_marker: float  # share of the Grad-CAM map's mass on the marker (its area share: 3.5%)
    deepvid_marker: float  # share of the DeepVID weight map's |mass| on the marker
    colour_detectors: int  # units of the last layer labelled with a colour
    shape_detectors: int  # units of the last layer labelled with an object or a part
    summit_shape_nodes: float  # mean share of Summit's last-layer graph nodes that detect shapes


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(args: argparse.Namespace, sizes: Sizes) -> int:
    import torch

    from deepvid_plugin.shortcut import marker_mask, shortcut_data

    started = time.perf_counter()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    _say(f"DeepVID demo: a clean run and a shortcut run, every kind; writing to {out}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: list[Measured] = []
    tracked_ids: list[str] = []
    vae: list[Any] = []  # fitted in the clean run, reused by the shortcut run (see below)
    for i, name in enumerate(RUNS):
        t0 = time.perf_counter()
        _say(f"[{i + 1}/{len(RUNS) + 1}] run '{name}': "
             + ("the marker is random" if name == "clean" else
                "the marker's colour gives the label in training (random at test time)"))
        torch.manual_seed(args.seed)
        data = shortcut_data(name, n_train=sizes.n_train, n_test=sizes.n_test, seed=args.seed)
        picked = list(range(sizes.instances))  # the same test images, so the same ids, per run
        tracked_ids = [f"test-{j}" for j in picked]
        measured = _train_and_explain(args, sizes, name, data, picked, tracked_ids, out, stamp,
                                      marker_mask(data.x_test.shape[-1]), vae)
        results.append(measured)
        _say(f"      done in {time.perf_counter() - t0:.0f}s: test accuracy "
             f"{measured.test_accuracy:.3f} (train {measured.train_accuracy:.3f})")
    _say(f"[{len(RUNS) + 1}/{len(RUNS) + 1}] what the shortcut looks like (clean vs shortcut)")
    _say(table(results))
    _say(f"      the whole demo took {time.perf_counter() - started:.0f}s")
    _say(where_to_look(out, args.port, results, tracked_ids))
    if args.no_serve:
        return 0
    from deepvid_plugin.demo import serve

    return serve(os.path.join(out, "runs"), args.port)


def _train_and_explain(args: argparse.Namespace, sizes: Sizes, name: str, data: Any,
                       picked: list[int], ids: list[str], out: str, stamp: str,
                       marker: np.ndarray, vae: list[Any]) -> Measured:
    import mlflow
    import torch
    from tqdm.auto import tqdm

    from deepvid_plugin.callbacks import DeepVIDCallback
    from deepvid_plugin.digits import accuracy, train_epoch
    from deepvid_plugin.explain import GradCAMExplainer
    from deepvid_plugin.explain.netdissect import ConceptSet, NetDissect, NetDissectExplainer
    from deepvid_plugin.explain.summit import Summit, SummitExplainer
    from deepvid_plugin.shortcut import LAYERS, ShapesCNN

    _start_mlflow(out, name, args, sizes)
    model = ShapesCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(args.seed)
    probe = ConceptSet.synthetic(sizes.probe, size=data.x_test.shape[-1], seed=args.seed + 7)
    every = sizes.every
    summit = Summit(data.x_test, data.y_test, layers=LAYERS, class_names=data.class_names,
                    per_class=max(5, sizes.n_test // (4 * len(data.class_names))), seed=args.seed)
    explainers = [GradCAMExplainer(), NetDissectExplainer(NetDissect(probe, LAYERS),
                                                          every_n_epochs=every, n_thumbnails=24),
                  SummitExplainer(summit, every_n_epochs=every)]
    logdir = os.path.join(out, "runs", f"shapes-{name}-{stamp}")
    last: list[Any] = []
    try:
        # One VAE for both runs, fitted on the clean run's images (where the marker is random, as
        # at test time): the two runs then explain the same instances with the same neighbours,
        # so their DeepVID maps differ only because the models do (and it is fitted once).
        source = {"generator": vae[0]} if vae else {"train_data": data.x_train,
                                                    "vae_epochs": sizes.vae_epochs}
        cb = DeepVIDCallback(model, data.x_test[picked], ids=ids, labels=data.y_test[picked],
                             class_names=list(data.class_names), n_neighbours=sizes.neighbours,
                             seed=args.seed, explainers=explainers, logdir=logdir, mlflow=True,
                             **source)
        cb.prepare()
        if not vae:
            vae.append(cb.explanations.deepvid.generator)
        with cb, tqdm(range(sizes.epochs), desc=f"training {name}", unit="epoch") as bar:
            for epoch in bar:
                loss = train_epoch(model, opt, data.x_train, data.y_train, generator=gen)
                acc = accuracy(model, data.x_test, data.y_test)
                mlflow.log_metrics({"train_loss": loss, "test_accuracy": acc}, step=epoch)
                records = cb.on_epoch_end(epoch)
                # Network Dissection and Summit run every `every` epochs: keep their latest
                kinds = {_kind(r) for r in records}
                last = [r for r in last if _kind(r) not in kinds] + list(records)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
        if cb.failures:
            raise RuntimeError(f"explainers failed in run {name!r}: {cb.failures}")
        train_acc = accuracy(model, data.x_train, data.y_train)
        mlflow.log_metric("train_accuracy", train_acc)
    finally:
        mlflow.end_run()
    return measure(name, last, marker, acc, train_acc)


def _kind(record: Any) -> str:
    return getattr(record, "kind", "deepvid")


def measure(name: str, records: list[Any], marker: np.ndarray, test_acc: float,
            train_acc: float) -> Measured:
    """The numbers that show a shortcut, from one run's last records of every kind."""
    by_kind: dict[str, list[Any]] = {}
    for r in records:
        by_kind.setdefault(_kind(r), []).append(r)
    missing = sorted({"deepvid", "gradcam", "netdissect", "summit"} - set(by_kind))
    if missing:
        raise RuntimeError(f"run {name!r}: expected records of every kind, missing {missing}")
    cams = [np.maximum(np.asarray(r.arrays["cam_pred"], np.float64), 0)
            for r in by_kind["gradcam"]]
    weights = [np.abs(np.asarray(r.weights[r.predicted], np.float64)).sum(0)
               for r in by_kind["deepvid"]]
    layer = _deepest(by_kind["netdissect"])
    cats = np.asarray(layer.meta["label_category"])
    det = np.asarray(layer.arrays["detector"]).astype(bool)
    unit_cat = cats[np.asarray(layer.arrays["label"], np.int64)]
    shape_units = {(layer.meta["layer"], int(u))
                   for u in np.flatnonzero(det & np.isin(unit_cat, ["object", "part"]))}
    return Measured(
        run=name, test_accuracy=float(test_acc), train_accuracy=float(train_acc),
        gradcam_marker=_share(cams, marker), deepvid_marker=_share(weights, marker),
        colour_detectors=int((det & (unit_cat == "color")).sum()),
        shape_detectors=int((det & np.isin(unit_cat, ["object", "part"])).sum()),
        summit_shape_nodes=_summit_share(by_kind["summit"], shape_units))


def _deepest(records: list[Any]) -> Any:
    from deepvid_plugin.shortcut import LAYERS

    return max(records, key=lambda r: LAYERS.index(r.meta["layer"]))


def _share(maps: list[np.ndarray], region: np.ndarray) -> float:
    """Mean over maps of the share of each map's mass inside ``region``."""
    shares = [float(m[region].sum() / m.sum()) for m in maps if m.shape == region.shape
              and m.sum() > 0]
    return float(np.mean(shares)) if shares else float("nan")


def _summit_share(records: list[Any], units: set[tuple[str, int]]) -> float:
    """Mean over classes of the share of their graph's last-layer nodes that are in ``units``."""
    from deepvid_plugin.shortcut import LAYERS

    shares = []
    for r in records:
        names = list(r.meta["layers"])
        layers = [names[int(i)] for i in np.asarray(r.arrays["node_layer"]).tolist()]
        chans = np.asarray(r.arrays["node_channel"]).tolist()
        deep = [(la, int(c)) for la, c in zip(layers, chans, strict=True) if la == LAYERS[-1]]
        if deep:
            shares.append(sum(d in units for d in deep) / len(deep))
    return float(np.mean(shares)) if shares else float("nan")


def table(results: list[Measured]) -> str:
    rows = [("test accuracy (marker random)", "test_accuracy", "{:.3f}"),
            ("train accuracy", "train_accuracy", "{:.3f}"),
            ("Grad-CAM mass on the marker", "gradcam_marker", "{:.0%}"),
            ("DeepVID |weight| mass on the marker", "deepvid_marker", "{:.0%}"),
            ("colour detectors (last layer)", "colour_detectors", "{}"),
            ("shape detectors (last layer)", "shape_detectors", "{}"),
            ("Summit: shape detectors among graph nodes", "summit_shape_nodes", "{:.0%}")]
    head = f"  {'':<42}" + "".join(f"{r.run:>12}" for r in results)
    lines = [head, "  " + "-" * (len(head) - 2)]
    for label, field, fmt in rows:
        lines.append(f"  {label:<42}" + "".join(
            f"{fmt.format(getattr(r, field)):>12}" for r in results))
    lines.append("  (the marker covers 3.5% of each image)")
    return "\n".join(lines)


def where_to_look(out: str, port: int, results: list[Measured], ids: list[str]) -> str:
    clean, short = results[0], results[-1]
    first = ids[0] if ids else "test-0"
    db = os.path.join(out, "mlflow.db")
    return "\n".join([
        "\nWhere to look",
        f"  TensorBoard: tensorboard --logdir {os.path.join(out, 'runs')} --host 127.0.0.1 "
        f"--port {port}",
        f"    open http://127.0.0.1:{port}/#deepvid : pick a kind (DeepVID, Grad-CAM, Network "
        f"Dissection, Summit) and a run; the 'Compare runs' tab puts the two runs side by side "
        f"on one instance (e.g. {first})",
        f"  MLflow: mlflow server --backend-store-uri sqlite:///{db} --app-name deepvid "
        "--host 127.0.0.1 --port 5000",
        "    open http://127.0.0.1:5000/deepvid/ (experiment 'deepvid-demo', both runs: the "
        "compare view), and MLflow's own UI at http://127.0.0.1:5000 for the metrics",
        "What the shortcut looks like",
        f"  accuracy: the shortcut run fits its training set ({short.train_accuracy:.2f}) but "
        f"scores {short.test_accuracy:.2f} at test time, where the clean run scores "
        f"{clean.test_accuracy:.2f}.",
        f"  DeepVID: the student's weight map of the predicted class puts "
        f"{short.deepvid_marker:.0%} of its mass on the top-left marker (clean "
        f"{clean.deepvid_marker:.0%}; the marker is 3.5% of the image).",
        f"  Grad-CAM: {short.gradcam_marker:.0%} of the map's mass lies on the marker corner "
        f"(clean {clean.gradcam_marker:.0%}).",
        f"  Network Dissection: {short.shape_detectors} units of the last layer detect a shape "
        f"or part and {short.colour_detectors} a colour (clean: {clean.shape_detectors} and "
        f"{clean.colour_detectors}): the shortcut model learned "
        + ("fewer" if short.shape_detectors < clean.shape_detectors else "no fewer")
        + " shape concepts.",
        f"  Summit: {short.summit_shape_nodes:.0%} of the class graphs' last-layer nodes are "
        f"shape detectors (clean {clean.summit_shape_nodes:.0%}).",
    ])


def _start_mlflow(out: str, name: str, args: argparse.Namespace, sizes: Sizes) -> None:
    import mlflow
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{os.path.join(out, 'mlflow.db')}"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("deepvid-demo")
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        "deepvid-demo", artifact_location=f"file://{os.path.join(out, 'mlartifacts')}")
    mlflow.start_run(experiment_id=exp_id, run_name=f"shapes-{name}-{time.strftime('%H%M%S')}")
    mlflow.log_params({"data": "shapes", "shortcut": name == "shortcut", "seed": args.seed,
                       **dataclasses.asdict(sizes), "model": "ShapesCNN"})
