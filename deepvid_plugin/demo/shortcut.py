"""`deepvid demo` (the default, ``--data marked-digits``; also ``--data shapes``): find a shortcut
with every kind.

Two runs train the same model on the same data (a :class:`~deepvid_plugin.demo.stories.Story`) and
track the same test instances under the same ids: a **clean** run, whose cue is random, and a
**shortcut** run, whose cue gives the label away in training (random at test time). Each run is
explained at every epoch with DeepVID and Grad-CAM, and every few epochs with Network Dissection
and Summit, into ``OUT/runs/<run>`` (TensorBoard) and ``OUT/mlflow.db`` (MLflow). Where the story
has a student model, a third run distils the clean model into it with Exp-KD
(:class:`~deepvid_plugin.methods.cam_agreement.loss.CAMDistillLoss`) and logs the teacher-vs-student CAMs too. The
demo then measures where the shortcut shows (test accuracy, the maps' mass on the cue, cue and task
detectors, cue detectors in Summit's graphs) and prints where to look.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any

import numpy as np

RUNS = ("clean", "shortcut")
DISTILLED = "distilled"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big the demo is (``--quick`` shrinks it for tests); ``None``: all the data there is."""

    n_train: int | None
    n_test: int | None
    epochs: int
    instances: int
    neighbours: int
    vae_epochs: int
    probe: int
    every: int  # Network Dissection and Summit run at epochs 0, every, 2 * every, ...


SIZES = {
    "marked-digits": {
        "full": Sizes(n_train=None, n_test=None, epochs=10, instances=8, neighbours=512,
                      vae_epochs=20, probe=720, every=3),
        "quick": Sizes(n_train=400, n_test=120, epochs=2, instances=4, neighbours=64,
                       vae_epochs=2, probe=200, every=1)},
    "shapes": {
        "full": Sizes(n_train=2000, n_test=500, epochs=12, instances=8, neighbours=256,
                      vae_epochs=6, probe=300, every=4),
        "quick": Sizes(n_train=400, n_test=120, epochs=2, instances=4, neighbours=64,
                       vae_epochs=1, probe=120, every=1)},
}


@dataclasses.dataclass(frozen=True)
class Measured:
    """What one run shows (see :func:`measure`)."""

    run: str
    test_accuracy: float
    train_accuracy: float
    gradcam_cue: float  # share of the Grad-CAM map's mass on the instance's cue
    deepvid_cue: float  # share of the DeepVID weight map's |mass| on the instance's cue
    cue_detectors: int  # units of the last layer labelled with a cue concept
    task_detectors: int  # units of the last layer labelled with a task concept
    summit_cue_nodes: float  # mean share of Summit's last-layer graph nodes that detect the cue
    trusted: str = ""  # "k/n": DeepVID maps that pass their own evidence (fidelity + deletion)
    cam_pearson: float | None = None  # distilled run: student-teacher CAM Pearson (top-1 class)
    accuracy_by_epoch: tuple[float, ...] = ()  # test accuracy after each epoch
    alerts: tuple[dict, ...] = ()  # the drift alerts the callback raised ({step, detector, ...})


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(args: argparse.Namespace, sizes: Sizes) -> int:
    from deepvid_plugin.demo.stories import story

    st = story(args.data)
    started = time.perf_counter()
    out = os.path.abspath(args.out)
    results, shared, ids = train_runs(args, sizes, st)
    n_steps = len(results) + 1
    _say(f"[{n_steps}/{n_steps}] what the shortcut looks like")
    _say(alert_lines(results))
    _say(table(results, st))
    summary = os.path.join(out, "shortcut-summary.json")
    with open(summary, "w") as f:  # the same numbers for scripts (make screenshots, the tests)
        json.dump({"data": st.name, "seed": args.seed, "sizes": dataclasses.asdict(sizes),
                   "ids": ids, "runs": [dataclasses.asdict(r) for r in results]}, f, indent=1)
    _say(f"      (also in {summary})")
    _say(f"      the whole demo took {time.perf_counter() - started:.0f}s")
    _say(where_to_look(out, args.port, results, shared["names"],
                       shared.get("telling", ids[0]), st, shared.get("telling_text")))
    if args.no_serve:
        return 0
    from deepvid_plugin.demo.serve import serve

    return serve(os.path.join(out, "runs"), args.port,
                 {"Compare runs (clean vs shortcut)": tensorboard_query(
                     shared["names"], shared.get("telling", ids[0]))})


def train_runs(args: argparse.Namespace, sizes: Sizes, st: Any
               ) -> tuple[list[Measured], dict[str, Any], list[str]]:
    """Train and explain the story's runs (clean, shortcut and, when the story has a student,
    distilled) into ``args.out``: ``(what each run shows, what they share, the tracked ids)``."""
    import torch

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    third = st.student is not None
    n_steps = len(RUNS) + third + 1
    _say(f"DeepVID demo ({st.name}): a clean run and a shortcut run"
         + (", then the clean model distilled into a small student" if third else "")
         + f", every kind; writing to {out}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: list[Measured] = []
    picked = list(range(sizes.instances))  # the same test images, so the same ids, in every run
    ids = [f"test-{j}" for j in picked]
    # what the runs share: the VAE and the Dissection probe (made in the clean run), the clean
    # model (the distilled run's teacher), the run names, and the instance the links open
    shared: dict[str, Any] = {}
    for i, name in enumerate(RUNS + ((DISTILLED,) if third else ())):
        t0 = time.perf_counter()
        _say(f"[{i + 1}/{n_steps}] run '{name}': " + {
            "clean": f"{st.cue} is random",
            "shortcut": f"{st.cue} gives the label in training (random at test time)",
            DISTILLED: "a small student distilled from the clean model with Exp-KD (CAMs and "
                       "logits)"}[name])
        torch.manual_seed(args.seed)
        data = st.data("shortcut" if name == "shortcut" else "clean", sizes.n_train,
                       sizes.n_test, args.seed)
        measured = _train_and_explain(args, sizes, st, name, data, picked, ids, out, stamp, shared)
        results.append(measured)
        _say(f"      done in {time.perf_counter() - t0:.0f}s: test accuracy "
             f"{measured.test_accuracy:.3f} (train {measured.train_accuracy:.3f}); "
             f"{len(measured.alerts) or 'no'} alert{'s' if len(measured.alerts) != 1 else ''}")
    return results, shared, ids


def _train_and_explain(args: argparse.Namespace, sizes: Sizes, st: Any, name: str, data: Any,
                       picked: list[int], ids: list[str], out: str, stamp: str,
                       shared: dict[str, Any]) -> Measured:
    import mlflow
    import torch
    from tqdm.auto import tqdm

    from deepvid_plugin.callbacks import DeepVIDCallback
    from deepvid_plugin.demo.digits import accuracy, train_epoch
    from deepvid_plugin.explain import GradCAMExplainer
    from deepvid_plugin.methods.netdissect import NetDissect, NetDissectExplainer
    from deepvid_plugin.methods.summit import Summit, SummitExplainer

    run_name = f"{st.name}-{name}-{stamp}"  # the TensorBoard run and the MLflow run share it
    shared.setdefault("names", {})[name] = run_name
    _start_mlflow(out, run_name, name, args, sizes, st.name)
    model = st.student() if name == DISTILLED else st.model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(args.seed)
    if "probe" not in shared:
        shared["probe"] = st.probe(sizes.probe, args.seed + 7)
    summit = Summit(data.x_test, data.y_test, layers=st.layers, class_names=data.class_names,
                    per_class=max(5, len(data.y_test) // (4 * len(data.class_names))),
                    seed=args.seed)
    explainers: list[Any] = [
        GradCAMExplainer(),
        NetDissectExplainer(NetDissect(shared["probe"], st.layers),
                            every_n_epochs=sizes.every, n_thumbnails=24),
        SummitExplainer(summit, every_n_epochs=sizes.every)]
    kd = None
    if name == DISTILLED:
        from deepvid_plugin.explain import CAMAgreement
        from deepvid_plugin.methods.cam_agreement.loss import CAMDistillLoss

        teacher = shared["teacher"]
        kd = CAMDistillLoss(teacher, model, teacher_layer=st.cam_layer,
                            student_layer=st.cam_layer, top_k=3, cam_weight=20.0, kd_weight=1.0)
        explainers.append(CAMAgreement(teacher, st.cam_layer, st.cam_layer, top_k=3))
    logdir = os.path.join(out, "runs", run_name)
    last: list[Any] = []
    accs: list[float] = []
    seen: list[dict] = []
    try:
        # One VAE for every run, fitted on the clean run's images (where the cue is random, as at
        # test time): the runs then explain the same instances with the same neighbours, so their
        # DeepVID maps differ only because the models do (and it is fitted once).
        source = ({"generator": shared["vae"]} if "vae" in shared
                  else {"train_data": data.x_train, "vae_epochs": sizes.vae_epochs})
        cb = DeepVIDCallback(model, data.x_test[picked], ids=ids, labels=data.y_test[picked],
                             class_names=list(data.class_names), n_neighbours=sizes.neighbours,
                             seed=args.seed, explainers=explainers, logdir=logdir, mlflow=True,
                             on_alert=seen.append, **source)
        cb.prepare()
        if cb.explanations.deepvid.generator is not None:  # none for region students (shapes)
            shared.setdefault("vae", cb.explanations.deepvid.generator)
        with cb, tqdm(range(sizes.epochs), desc=f"training {name}", unit="epoch") as bar:
            for epoch in bar:
                if kd is None:
                    loss = train_epoch(model, opt, data.x_train, data.y_train, generator=gen)
                else:
                    loss = distill_epoch(kd, model, opt, data.x_train, data.y_train, gen)
                acc = accuracy(model, data.x_test, data.y_test)
                # TensorBoard scalars and MLflow metrics alike: the DeepVID tab shows the test
                # accuracy above its grid (the first clue), and the Scalars dashboard charts both
                cb.log_metrics({"train_loss": loss, "test_accuracy": acc}, step=epoch)
                accs.append(acc)
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
    if name == "clean":
        shared["teacher"] = model
    if name == "shortcut":  # the instance the links open: the first the shortcut model gets wrong
        wrong = [r for r in last if _kind(r) == "deepvid" and r.label is not None
                 and r.predicted != r.label]
        if wrong:
            r = wrong[0]
            shared["telling"] = r.instance_id
            k = int(r.instance_id.rsplit("-", 1)[1])
            contrib = np.abs(r.contribution_map(r.predicted))
            share = _share([(contrib, data.test_cue_masks[picked][k])])
            shared["telling_text"] = (
                f"{r.instance_id}, a {r.class_names[r.label]} the shortcut model calls "
                f"{r.class_names[r.predicted]} (the links above): its contribution map (weight x "
                f"input) puts {share:.0%} of its mass on {st.cue_where}.")
    return dataclasses.replace(measure(name, last, data.test_cue_masks[picked], acc, train_acc, st),
                               accuracy_by_epoch=tuple(accs), alerts=tuple(seen))


def distill_epoch(kd: Any, model: Any, opt: Any, x: Any, y: Any, generator: Any,
                  batch_size: int = 64) -> float:
    """One epoch of Exp-KD: cross-entropy plus the CAM and logit terms; returns the mean loss."""
    import torch
    import torch.nn.functional as F

    model.train()
    perm = torch.randperm(len(y), generator=generator)
    total = 0.0
    for idx in perm.split(batch_size):
        logits, distill = kd(x[idx])
        loss = F.cross_entropy(logits, y[idx]) + distill
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(y)


def _kind(record: Any) -> str:
    return getattr(record, "kind", "deepvid")


def _abs_weights(r: Any) -> np.ndarray:
    """(H, W) |weights| of the predicted class: summed over channels (pixels) or per region."""
    if r.regions:
        return np.abs(r.weight_map(r.predicted))
    return np.abs(np.asarray(r.class_weights(r.predicted), np.float64)).sum(0)


def measure(name: str, records: list[Any], cue: np.ndarray, test_acc: float, train_acc: float,
            st: Any) -> Measured:
    """The numbers that show a shortcut, from one run's last records of every kind; ``cue``:
    ``(K, S, S)`` bool, the cue's pixels in each tracked instance (records carry their id,
    ``test-<k>``, k the position among the tracked instances)."""
    by_kind: dict[str, list[Any]] = {}
    for r in records:
        by_kind.setdefault(_kind(r), []).append(r)
    missing = sorted({"deepvid", "gradcam", "netdissect", "summit"} - set(by_kind))
    if missing:
        raise RuntimeError(f"run {name!r}: expected records of every kind, missing {missing}")
    cams = [(np.maximum(np.asarray(r.arrays["cam_pred"], np.float64), 0), _cue_of(r, cue))
            for r in by_kind["gradcam"]]
    weights = [(_abs_weights(r), _cue_of(r, cue)) for r in by_kind["deepvid"]]
    layer = max(by_kind["netdissect"], key=lambda r: st.layers.index(r.meta["layer"]))
    cats = np.asarray(layer.meta["label_category"])
    det = np.asarray(layer.arrays["detector"]).astype(bool)
    unit_cat = cats[np.asarray(layer.arrays["label"], np.int64)]
    is_cue = det & (unit_cat == st.cue_category)
    cue_units = {(layer.meta["layer"], int(u)) for u in np.flatnonzero(is_cue)}
    pearson = None
    if "cam_agreement" in by_kind:
        top1 = [r.meta["pearson"][0] for r in by_kind["cam_agreement"]]
        top1 = [float(p) for p in top1 if p is not None]
        pearson = float(np.mean(top1)) if top1 else float("nan")
    return Measured(
        run=name, test_accuracy=float(test_acc), train_accuracy=float(train_acc),
        gradcam_cue=_share(cams), deepvid_cue=_share(weights),
        cue_detectors=int(is_cue.sum()),
        task_detectors=int((det & np.isin(unit_cat, st.task_categories)).sum()),
        summit_cue_nodes=_summit_share(by_kind["summit"], cue_units, st.layers[-1]),
        trusted=f"{sum(r.trustworthy for r in by_kind['deepvid'])}/{len(by_kind['deepvid'])}",
        cam_pearson=pearson)


def _cue_of(record: Any, cue: np.ndarray) -> np.ndarray:
    subject = getattr(record, "instance_id", None) or record.subject
    return cue[int(str(subject).rsplit("-", 1)[1])]


def _share(maps: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean over (map, region) pairs of the share of the map's mass inside the region."""
    shares = [float(m[region].sum() / m.sum()) for m, region in maps
              if m.shape == region.shape and m.sum() > 0]
    return float(np.mean(shares)) if shares else float("nan")


def _summit_share(records: list[Any], units: set[tuple[str, int]], last_layer: str) -> float:
    """Mean over classes of the share of their graph's last-layer nodes that are in ``units``."""
    shares = []
    for r in records:
        names = list(r.meta["layers"])
        layers = [names[int(i)] for i in np.asarray(r.arrays["node_layer"]).tolist()]
        chans = np.asarray(r.arrays["node_channel"]).tolist()
        deep = [(la, int(c)) for la, c in zip(layers, chans, strict=True) if la == last_layer]
        if deep:
            shares.append(sum(d in units for d in deep) / len(deep))
    return float(np.mean(shares)) if shares else float("nan")


def gap_epoch(clean: Measured, other: Measured, gap: float = 0.1) -> int | None:
    """The first epoch where ``other``'s test accuracy trails the clean run's by ``gap`` or
    more (None: never)."""
    pairs = zip(clean.accuracy_by_epoch, other.accuracy_by_epoch, strict=False)
    for epoch, (a, b) in enumerate(pairs):
        if a - b >= gap:
            return epoch
    return None


def alert_lines(results: list[Measured]) -> str:
    """Each run's drift alerts, the first one's epoch next to the epoch where its test accuracy
    falls behind the clean run's."""
    clean = next(r for r in results if r.run == "clean")
    lines = ["  alerts (the tool's own reading of the explanations, every explained epoch):"]
    for r in results:
        if not r.alerts:
            lines.append(f"    {r.run}: none")
            continue
        gap = None if r is clean else gap_epoch(clean, r)
        when = f"first at epoch {r.alerts[0]['step']}"
        if r is not clean:
            when += ("; its test accuracy never trails the clean run's by 0.1" if gap is None
                     else f"; its test accuracy trails the clean run's by 0.1 from epoch {gap}")
        lines.append(f"    {r.run}: {len(r.alerts)} ({when})")
        for a in r.alerts[:4]:
            lines.append(f"      epoch {a['step']} [{a['detector'].replace('_', ' ')}] "
                         f"{a['message']}")
        if len(r.alerts) > 4:
            lines.append(f"      ... and {len(r.alerts) - 4} more (GET alerts?run=..., the "
                         "DeepVID tab's banner)")
    return "\n".join(lines)


def table(results: list[Measured], st: Any) -> str:
    cue_name, task_name = st.cue_detectors, st.task_detectors
    rows = [("test accuracy (cue random)", "test_accuracy", "{:.3f}"),
            ("train accuracy", "train_accuracy", "{:.3f}"),
            ("Grad-CAM mass on the cue", "gradcam_cue", "{:.0%}"),
            ("DeepVID |weight| mass on the cue", "deepvid_cue", "{:.0%}"),
            ("DeepVID maps that pass their evidence", "trusted", "{}"),
            (f"{cue_name} detectors (last layer)", "cue_detectors", "{}"),
            (f"{task_name} detectors (last layer)", "task_detectors", "{}"),
            (f"Summit: {cue_name} detectors among nodes", "summit_cue_nodes", "{:.0%}")]
    if any(r.cam_pearson is not None for r in results):
        rows.append(("CAM Pearson with the clean teacher", "cam_pearson", "{:.2f}"))
    head = f"  {'':<42}" + "".join(f"{r.run:>12}" for r in results)
    lines = [head, "  " + "-" * (len(head) - 2)]
    for label, field, fmt in rows:
        cells = []
        for r in results:
            v = getattr(r, field)
            cells.append(f"{'-' if v is None else fmt.format(v):>12}")
        lines.append(f"  {label:<42}" + "".join(cells))
    lines.append(f"  ({st.cue_area})")
    return "\n".join(lines)


def where_to_look(out: str, port: int, results: list[Measured], names: dict[str, str],
                  instance: str, st: Any, instance_text: str | None = None) -> str:
    """The closing text: the servers, the links that open Compare runs on ``instance`` (clean vs
    shortcut), and one sentence per view. ``names``: run kind -> run name (TensorBoard's run
    folder and MLflow's run name)."""
    from urllib.parse import urlencode

    by = {r.run: r for r in results}
    clean, short = by["clean"], by["shortcut"]
    db = os.path.join(out, "mlflow.db")
    cue_name = st.cue_detectors
    pair = {"a": names["clean"], "b": names["shortcut"], "instance": instance}
    tb_link = f"http://127.0.0.1:{port}/?{tensorboard_query(names, instance)}#deepvid"
    ml_link = ("http://127.0.0.1:5000/deepvid/?"
               + urlencode({"experiment": "deepvid-demo", "view": "compare", **pair}))
    lines = [
        "\nWhere to look",
        f"  TensorBoard: tensorboard --logdir {os.path.join(out, 'runs')} --host 127.0.0.1 "
        f"--port {port}",
        f"    open http://127.0.0.1:{port}/#deepvid and pick a run and a kind (DeepVID, Grad-CAM; "
        "the Dissection and Summit tabs); 'Compare runs' puts two runs side by side on one "
        "instance:",
        f"    {tb_link}",
        f"  MLflow: mlflow server --backend-store-uri sqlite:///{db} --app-name deepvid "
        "--host 127.0.0.1 --port 5000",
        f"    the same views for experiment 'deepvid-demo': {ml_link}",
        "    and MLflow's own UI at http://127.0.0.1:5000 charts the runs' test_accuracy",
        "What the shortcut looks like",
        f"  accuracy: the shortcut run fits its training set ({short.train_accuracy:.2f}) but "
        f"scores {short.test_accuracy:.2f} at test time, where {st.cue} is random; the clean run "
        f"scores {clean.test_accuracy:.2f}.",
        (f"  DeepVID: open {instance_text} " if instance_text else "  DeepVID: ")
        + f"Over the tracked instances the student's weight maps put {short.deepvid_cue:.0%} of "
        f"their mass on {st.cue_where} (clean {clean.deepvid_cue:.0%}; {st.cue_area}).",
        f"  Grad-CAM: {short.gradcam_cue:.0%} of the map's mass lies on {st.cue_where} "
        f"(clean {clean.gradcam_cue:.0%}).",
        f"  Network Dissection: the last layer has {short.cue_detectors} {cue_name} detectors "
        f"and {short.task_detectors} {st.task_detectors} detectors (clean: "
        f"{clean.cue_detectors} and {clean.task_detectors}).",
        f"  Summit: {short.summit_cue_nodes:.0%} of the class graphs' last-layer nodes are "
        f"{cue_name} detectors (clean {clean.summit_cue_nodes:.0%}).",
    ]
    if DISTILLED in by:
        d = by[DISTILLED]
        lines.append(
            f"  Exp-KD: the distilled student scores {d.test_accuracy:.2f}; its CAMs correlate "
            f"with the clean teacher's at Pearson {d.cam_pearson:.2f} (run "
            f"'{names[DISTILLED]}', 'Teacher vs student').")
    return "\n".join(lines)


def tensorboard_query(names: dict[str, str], instance: str) -> str:
    """The query string of the TensorBoard link that opens Compare runs, clean (A) vs shortcut
    (B), on ``instance`` (docs/ui.md, "Links")."""
    from urllib.parse import urlencode

    return urlencode({"deepvid_view": "compare", "deepvid_a": names["clean"],
                      "deepvid_b": names["shortcut"], "deepvid_instance": instance})


def _start_mlflow(out: str, run_name: str, name: str, args: argparse.Namespace,
                  sizes: Sizes, story: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{os.path.join(out, 'mlflow.db')}"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("deepvid-demo")
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        "deepvid-demo", artifact_location=f"file://{os.path.join(out, 'mlartifacts')}")
    mlflow.start_run(experiment_id=exp_id, run_name=run_name)
    # Few params: MLflow prints them all above every image card of the run, and a dozen push
    # the step cards out of their frame; the sizes go in one tag instead.
    mlflow.log_params({"data": story, "run": name, "seed": args.seed})
    mlflow.set_tag("deepvid.demo.sizes", json.dumps(dataclasses.asdict(sizes)))
