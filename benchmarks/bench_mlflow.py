"""MLflow: viewer.html size and time to a rendered compare view, on a real server.

2 runs x 16 instances x 100 steps (28x28, 10 classes, 32 shown neighbours, the engine's default)
are logged through ``MLflowSink`` into ``mlflow server --app-name deepvid`` (sqlite + proxied
artifacts). Measured:

- the size of the run's ``deepvid/viewer.html`` (target <= 5 MB);
- request -> rendered compare view (run B's map painted) in headless Chromium on
  ``/deepvid/?view=compare``, first load (server cache cold) and a reload (target <= 2 s);
- ``deepvid compare`` (CLI, self-contained page) wall time and page size;
- per-step sink cost (records + metrics upload; the step images are measured separately because
  they go out on a background thread);
- on the runs of ``deepvid demo`` (benchmarks/story_views.py; ``DEEPVID_BENCH_DEMO_OUT`` reuses a
  demo's output) served by the app: the ``deepvid/*`` metric keys per run (target <= 15), the
  ``compare`` route, and each view of the story drawn, with compare's "Map of" and kind changes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

INSTANCES, STEPS, CLASSES, SIZE, SHOWN = 16, 100, 10, 28, 32
CHROMIUM = "/usr/bin/chromium"


def _log_run(client, experiment: str, name: str, seed: int, log_images: bool,
             steps: int = STEPS) -> tuple[str, list[float]]:
    from deepvid_plugin.mlflow.sink import MLflowSink
    from tests.factories import make_record

    run_id = client.create_run(experiment, run_name=name).info.run_id
    # every step's image, to measure what drawing and uploading one costs
    sink = MLflowSink(run_id, client=client, viewer_every=10,
                      log_images="all" if log_images else False)
    per_step = []
    for step in range(steps):
        records = [make_record(f"test-{i}", step, n_classes=CLASSES, size=SIZE, n_shown=SHOWN,
                               seed=seed) for i in range(INSTANCES)]
        t = time.perf_counter()
        for r in records:
            sink.write(r, step)
        sink.flush()
        per_step.append(time.perf_counter() - t)
    t = time.perf_counter()
    sink.close()
    per_step.append(time.perf_counter() - t)  # the final viewer (and any pending images)
    client.set_terminated(run_id)
    return run_id, per_step


def _render_compare(url: str, reloads: int = 2) -> list[float]:
    from playwright.sync_api import sync_playwright

    from tests.e2e.fixtures_browser import CHROMIUM_ARGS

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            for _ in range(1 + reloads):
                t = time.perf_counter()
                page.goto(f"{url}/deepvid/?view=compare")
                # B's map is drawn last (a difference map only where A and B show one class)
                page.locator("[data-testid=compare-map-b] canvas").first.wait_for(
                    state="visible", timeout=120_000)
                times.append(time.perf_counter() - t)
        finally:
            browser.close()
    return times


def _get(url: str) -> tuple[int, float, bytes]:
    import urllib.error
    import urllib.request

    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return status, time.perf_counter() - t, body


def _demo(tmp: Path) -> tuple[list[dict], list[dict], str]:
    """The demo's runs in the app: metric keys, the compare route, the story's views."""
    import urllib.parse

    from playwright.sync_api import sync_playwright

    from benchmarks.story_views import Site, demo_output, run_names, story_times
    from tests.e2e.fixtures_browser import CHROMIUM_ARGS
    from tests.e2e.fixtures_mlflow import start_mlflow_server

    demo, how = demo_output(tmp)
    server = start_mlflow_server(demo, app_name="deepvid")
    rows: list[dict] = []
    try:
        client = server.client()
        exp = client.get_experiment_by_name("deepvid-demo").experiment_id
        found = client.search_runs([exp])
        keys = {r.info.run_name: sorted(k for k in r.data.metrics if k.startswith("deepvid/"))
                for r in found}
        most = max(len(v) for v in keys.values())
        rows.append({"measure": "demo: deepvid/* metric keys per run", "value": most,
                     "unit": "keys (most)", "detail": "; ".join(
                         f"{n.split('-')[2]}: {len(v)}" for n, v in sorted(keys.items()))})
        names = run_names([r.info.run_name for r in found])
        ids = {w: next(r.info.run_id for r in found if r.info.run_name == n) for w, n in names.items()}
        pair = f"{ids['clean']},{ids['shortcut']}"
        api = f"{server.url}/deepvid/api/compare?"
        cold = []
        for kind in ("deepvid", "gradcam"):
            for cls in ("own", "a", "b", "label"):
                status, took, body = _get(api + urllib.parse.urlencode(
                    {"instance": "test-0", "runs": pair, "kind": kind, "class": cls}))
                if status != 200:
                    raise RuntimeError(f"compare answered {status}: {body[:300]!r}")
                cold.append(took)
        hot = sorted(_get(api + urllib.parse.urlencode(
            {"instance": "test-0", "runs": pair, "kind": "deepvid", "class": "own"}))[1]
            for _ in range(20))
        p95 = hot[min(len(hot) - 1, round(0.95 * (len(hot) - 1)))]
        rows.append({"measure": "demo: compare route (repeated)", "value": round(statistics.median(hot) * 1e3, 1),
                     "unit": "ms p50", "detail": f"p95 {p95 * 1e3:.1f} ms; first request per kind and class: "
                     f"median {statistics.median(cold) * 1e3:.0f} ms, slowest {max(cold) * 1e3:.0f} ms"})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                views = story_times(browser, Site(server.url, "mlflow", exp), ids, "test-0")
            finally:
                browser.close()
    finally:
        server.stop()
    for view, v in views.items():
        rows.append({"measure": f"demo: {view} drawn in the app", "value": round(v["in_frame"], 3),
                     "unit": "s", "detail": f"median of loads; first load {v['first_total']:.3f} s"})
    cmp = views["compare"]
    rows.append({"measure": "demo: compare 'Map of' change", "value": round(cmp["class_change"], 3),
                 "unit": "s", "detail": "own -> true label, until redrawn"})
    rows.append({"measure": "demo: compare kind change", "value": round(cmp["kind_change"], 3),
                 "unit": "s", "detail": "DeepVID -> Grad-CAM, until redrawn"})
    targets = [
        {"name": "demo: deepvid/* metric keys per run (most)", "value": most, "target": "<= 15",
         "met": most <= 15, "note": "run-level summaries; per-instance metrics are opt-in"},
        {"name": "demo: compare route p95 in the app, s", "value": round(p95, 4), "target": "<= 0.1",
         "met": p95 <= 0.1, "note": "repeated requests"},
        {"name": "demo: compare drawn in the app, s", "value": round(cmp["in_frame"], 3),
         "target": "<= 1.0", "met": cmp["in_frame"] <= 1.0, "note": ""},
        {"name": "demo: compare 'Map of' change in the app, s", "value": round(cmp["class_change"], 3),
         "target": "<= 0.3", "met": cmp["class_change"] <= 0.3, "note": ""},
        {"name": "demo: compare kind change in the app, s", "value": round(cmp["kind_change"], 3),
         "target": "<= 0.3", "met": cmp["kind_change"] <= 0.3, "note": ""},
    ]
    return rows, targets, how


def run() -> dict[str, Any]:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from tests.e2e.fixtures_mlflow import start_mlflow_server

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"this benchmark needs Debian's chromium at {CHROMIUM}")
    tmp = Path(tempfile.mkdtemp(prefix="deepvid-bench-mlflow-"))
    server = start_mlflow_server(tmp / "server", app_name="deepvid")
    rows: list[dict[str, Any]] = []
    try:
        client = server.client()
        exp = client.create_experiment("bench")
        t = time.perf_counter()
        a, steps_a = _log_run(client, exp, "bench A", 1, log_images=False)
        b, steps_b = _log_run(client, exp, "bench B", 2, log_images=False)
        log_s = time.perf_counter() - t
        body = steps_a[:-1] + steps_b[:-1]
        rows.append({"measure": "sink: records + metrics per step (16 instances)",
                     "value": round(statistics.median(body), 3), "unit": "s",
                     "detail": f"median; p90 {statistics.quantiles(body, n=10)[-1]:.3f}s "
                               f"(viewer every 10 steps); close {steps_a[-1]:.2f}s; "
                               f"2 runs logged in {log_s:.0f}s"})
        _, img_steps = _log_run(client, exp, "bench images", 3, log_images=True, steps=5)
        rows.append({"measure": "sink: + log_image of 16 weight maps (background)",
                     "value": round(img_steps[-1] / 5, 2), "unit": "s/step",
                     "detail": f"close() drained 5 steps of images in {img_steps[-1]:.1f}s; "
                               f"write+flush median {statistics.median(img_steps[:-1]):.3f}s"})

        viewer = Path(client.download_artifacts(a, "deepvid/viewer.html", str(tmp)))
        viewer_mb = viewer.stat().st_size / 1e6
        rows.append({"measure": "viewer.html size", "value": round(viewer_mb, 2), "unit": "MB",
                     "detail": f"{INSTANCES} x {STEPS}, {SIZE}x{SIZE}, {CLASSES} classes"})

        times = _render_compare(server.url)
        rows.append({"measure": "request -> rendered compare view (cold server cache)",
                     "value": round(times[0], 2), "unit": "s", "detail": "/deepvid/?view=compare"})
        rows.append({"measure": "request -> rendered compare view (reload)",
                     "value": round(min(times[1:]), 2), "unit": "s",
                     "detail": f"best of {len(times) - 1}"})

        out = tmp / "compare.html"
        t = time.perf_counter()
        code = ("import argparse,sys; from deepvid_plugin.mlflow import compare as c; "
                "p=argparse.ArgumentParser(); c.add_arguments(p); "
                "sys.exit(c.run(p.parse_args(sys.argv[1:])))")
        subprocess.run([sys.executable, "-c", code, a, b, "--tracking-uri", server.url,
                        "-o", str(out)], check=True, capture_output=True)
        rows.append({"measure": "deepvid compare (CLI, incl. interpreter start)",
                     "value": round(time.perf_counter() - t, 1), "unit": "s",
                     "detail": f"page {out.stat().st_size / 1e6:.1f} MB"})
        server.stop()
        demo_rows, demo_targets, how = _demo(tmp)
        rows.extend(demo_rows)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    cold, warm = rows[3]["value"], rows[4]["value"]
    return {
        "title": "MLflow: viewer artifact and compare view",
        "settings": {"runs": 2, "instances": INSTANCES, "steps": STEPS, "classes": CLASSES,
                     "size": SIZE, "shown_neighbours": SHOWN,
                     "server": "mlflow server --app-name deepvid, uvicorn, 1 worker, sqlite"},
        "rows": rows,
        "targets": [
            {"name": "viewer.html size (MB)", "value": rows[2]["value"], "target": "<= 5",
             "met": rows[2]["value"] <= 5, "note": ""},
            {"name": "compare view, cold (s)", "value": cold, "target": "<= 2",
             "met": cold <= 2, "note": "first load after server start: run listing, both overviews "
                     "(index.json), one record bundle per run"},
            {"name": "compare view, reload (s)", "value": warm, "target": "<= 2",
             "met": warm <= 2, "note": ""},
            *demo_targets,
        ],
        "notes": [f"demo: {how}"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
