"""``deepvid demo --data digits``: the single-run demo. A small CNN on scikit-learn's digits, a
dozen tracked test digits (some of them hard or misclassified) explained with DeepVID at every
epoch, a fidelity table, the randomization sanity check and ``OUT/deepvid-demo.png``."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from deepvid_plugin.demo.serve import say as _say
from deepvid_plugin.demo.serve import serve


# ---- choosing what to track -------------------------------------------------------------------
def pick_instances(digits: Any, k: int, seed: int = 0) -> list[int]:
    """Indices into the test set: a third hard ones (misclassified or least confident under a
    quick logistic-regression probe, the digits a CNN also tends to struggle with), the rest one
    per class, so the grid shows both typical and difficult digits."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    xtr = digits.x_train.flatten(1).numpy()
    xte = digits.x_test.flatten(1).numpy()
    ytr, yte = digits.y_train.numpy(), digits.y_test.numpy()
    probe = LogisticRegression(max_iter=300, C=0.05).fit(xtr, ytr)
    proba = probe.predict_proba(xte)
    margin = proba[np.arange(len(yte)), yte] - np.where(
        np.eye(proba.shape[1], dtype=bool)[yte], -1, proba).max(1)
    n_hard = max(1, k // 3) if k > 1 else 0
    hard = [int(i) for i in np.argsort(margin, kind="stable")[:n_hard]]
    rng = np.random.default_rng(seed)
    easy: list[int] = []
    order = rng.permutation(len(yte))
    for cls in range(10):
        for i in order:
            if len(easy) + n_hard >= k:
                break
            if yte[i] == cls and margin[i] > 0.5 and int(i) not in hard:
                easy.append(int(i))
                break
    rest = [int(i) for i in order if int(i) not in hard and int(i) not in easy]
    return (hard + easy + rest)[:k]


def run_digits(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    _say(f"DeepVID demo: writing to {out}")
    _say("[1/6] loading scikit-learn's digits and choosing instances to track")
    import torch
    from tqdm.auto import tqdm

    from deepvid_plugin.callbacks import DeepVIDCallback
    from deepvid_plugin.demo.digits import DigitsCNN, accuracy, load_digits, train_epoch

    torch.manual_seed(args.seed)
    digits = load_digits(seed=args.seed)
    picked = pick_instances(digits, args.instances, args.seed)
    x_tracked, y_tracked = digits.x_test[picked], digits.y_test[picked]
    ids = [f"test-{i}" for i in picked]
    _say(f"      {len(digits.y_train)} training and {len(digits.y_test)} test digits; tracking "
         f"{len(ids)} of the test digits ({max(1, len(ids) // 3) if len(ids) > 1 else 0} hard)")

    _say("[2/6] opening the MLflow store")
    mlflow, run_id, tracking_uri = _start_mlflow(out, args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = os.path.join(out, "runs", f"digits-{stamp}")
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(args.seed)
    try:
        cb = DeepVIDCallback(model, x_tracked, ids=ids, labels=y_tracked,
                             class_names=digits.class_names, train_data=digits.x_train,
                             vae_epochs=args.vae_epochs, n_neighbours=args.neighbours,
                             seed=args.seed, logdir=logdir, mlflow=True)
        _say("[3/6] fitting the VAE that generates each instance's neighbours (once)")
        cb.prepare()
        _say(f"[4/6] training for {args.epochs} epochs, explaining {len(ids)} digits after each")
        history = []
        with cb, tqdm(range(args.epochs), desc="training", unit="epoch") as bar:
            for epoch in bar:
                loss = train_epoch(model, opt, digits.x_train, digits.y_train, generator=gen)
                acc = accuracy(model, digits.x_test, digits.y_test)
                cb.log_metrics({"train_loss": loss, "test_accuracy": acc}, step=epoch)
                t0 = time.perf_counter()
                records = cb.on_epoch_end(epoch)
                history.append(records)
                fid = _mean([r.fidelity.get("top1_agreement") for r in records])
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", fidelity=f"{fid:.2f}",
                                explain=f"{time.perf_counter() - t0:.1f}s")
    finally:
        mlflow.end_run()
    final = cb.last_records
    if not final:
        _say(f"no explanations were produced ({cb.failures}); see the warnings above")
        return 1
    _say(f"      final test accuracy {acc:.3f}")
    _say("[5/6] fidelity of the final explanations (student vs. model on held-out neighbours)")
    _say(fidelity_table(final, history[0]))
    _say("      randomization check (explain a re-initialised copy of the model):")
    from deepvid_plugin.explain import randomization_check

    check = randomization_check(cb.explanations.explainer, model, x_tracked, ids=ids)
    verdict = ("the explanations depend on the model's weights, as they should"
               if check.mean < 0.5 else "WARNING: explanations barely change for a random model")
    _say(f"      {check} -> {verdict}")
    png = os.path.join(out, "deepvid-demo.png")
    draw_png(final, png)
    _say(f"      wrote {png}")
    _say(f"[6/6] done in {time.perf_counter() - started:.0f}s")
    mlflow_cmd = (f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000")
    _say("\nTo see the run in MLflow (run "
         f"{run_id}, experiment 'deepvid-demo'; open deepvid/viewer.html in its artifacts):\n"
         f"  {mlflow_cmd}\n  then open http://127.0.0.1:5000\n"
         f"  (with --app-name deepvid added, http://127.0.0.1:5000/deepvid/ serves the viewer)")
    runs_dir = os.path.join(out, "runs")
    if args.no_serve:
        _say(f"\nTo see the DeepVID tab in TensorBoard:\n  tensorboard --logdir {runs_dir} "
             f"--host 127.0.0.1 --port {args.port}\n  then open "
             f"http://127.0.0.1:{args.port}/#deepvid")
        return 0
    return serve(runs_dir, args.port)


def _mean(values: list[Any]) -> float:
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(vals) / len(vals) if vals else float("nan")


def _start_mlflow(out: str, args: argparse.Namespace):
    import mlflow
    from mlflow import MlflowClient

    # An embedded sqlite store (MLflow 3 keeps the ./mlruns file store in maintenance mode),
    # with artifacts in a folder next to it, so `mlflow ui` on the same URI shows everything.
    tracking_uri = f"sqlite:///{os.path.join(out, 'mlflow.db')}"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("deepvid-demo")
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        "deepvid-demo", artifact_location=f"file://{os.path.join(out, 'mlartifacts')}")
    run = mlflow.start_run(experiment_id=exp_id, run_name=f"digits-{time.strftime('%H%M%S')}")
    mlflow.log_params({"epochs": args.epochs, "instances": args.instances,
                       "n_neighbours": args.neighbours, "vae_epochs": args.vae_epochs,
                       "seed": args.seed, "model": "DigitsCNN"})
    return mlflow, run.info.run_id, tracking_uri


def fidelity_table(records: list[Any], first: list[Any] | None = None) -> str:
    """A plain-text table: one row per instance, from its final record."""
    before = {r.instance_id: r.predicted for r in first or []}
    head = (f"  {'instance':<12}{'label':>6}{'pred':>6}{'p(pred)':>9}{'agree':>8}{'R2':>7}"
            f"{'del':>7}{'(rand)':>8}{'trust':>7}  note")
    lines = [head, "  " + "-" * (len(head) - 2)]
    for r in records:
        fid = r.fidelity
        notes = []
        if r.label is not None and r.predicted != r.label:
            notes.append("misclassified")
        if r.instance_id in before and before[r.instance_id] != r.predicted:
            notes.append(f"was {r.class_names[before[r.instance_id]]} at epoch 0")
        r2 = fid.get("r2_top")
        # deletion AUC of the map vs a random map (lower is better); NaN for older records
        dele, rand = (float("nan") if fid.get(k) is None else float(fid[k])
                      for k in ("deletion_auc", "random_deletion_auc"))
        if not r.trustworthy and fid.get("trust_reason"):
            notes.append(str(fid["trust_reason"]))
        lines.append(
            f"  {r.instance_id:<12}{'-' if r.label is None else r.class_names[r.label]:>6}"
            f"{r.class_names[r.predicted]:>6}{float(r.teacher_probs[r.predicted]):>9.3f}"
            f"{float(fid.get('top1_agreement', float('nan'))):>8.3f}"
            f"{float('nan') if r2 is None else float(r2):>7.3f}{dele:>7.3f}{rand:>8.3f}"
            f"{'yes' if r.trustworthy else 'NO':>7}  {', '.join(notes)}")
    n_trust = sum(r.trustworthy for r in records)
    tail = "" if n_trust == len(records) else "; do not read the others' weight maps"
    lines.append(f"  {n_trust}/{len(records)} explanations are trustworthy (the student mimics the "
                 f"model on held-out neighbours, and its map beats a random one at deletion/"
                 f"insertion){tail}")
    return "\n".join(lines)


def draw_png(records: list[Any], path: str, n_neighbours: int = 4) -> None:
    """One row per instance: the image, the weight map of its predicted class, and neighbours."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    import numpy as np

    cols = 2 + n_neighbours
    fig, axes = plt.subplots(len(records), cols, figsize=(1.5 * cols, 1.5 * len(records)),
                             squeeze=False)
    for row, r in zip(axes, records, strict=True):
        w = r.weight_map(r.predicted)
        scale = float(np.abs(w).max()) or 1.0
        label = "?" if r.label is None else r.class_names[r.label]
        row[0].imshow(np.asarray(r.image, np.float32).mean(0), cmap="gray_r")
        row[0].set_title(f"{r.instance_id}\nlabel {label}", fontsize=7)
        row[1].imshow(w, cmap="RdBu_r", vmin=-scale, vmax=scale)
        row[1].set_title(f"weights for {r.class_names[r.predicted]}\nfidelity "
                         f"{float(r.fidelity.get('top1_agreement', float('nan'))):.2f}",
                         fontsize=7)
        for j in range(n_neighbours):
            ax = row[2 + j]
            if j < r.neighbours.shape[0]:
                ax.imshow(np.asarray(r.neighbours[j], np.float32).mean(0), cmap="gray_r")
                ax.set_title(f"neighbour -> {r.class_names[int(r.neighbour_teacher[j])]}",
                             fontsize=6)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
