"""MLflow: viewer.html size and time to a rendered compare view, on a real server.

2 runs x 16 instances x 100 steps (28x28, 10 classes, 32 shown neighbours, the engine's default)
are logged through ``MLflowSink`` into ``mlflow server --app-name deepvid`` (sqlite + proxied
artifacts). Measured:

- the size of the run's ``deepvid/viewer.html`` (target <= 5 MB);
- request -> rendered compare view (difference map painted) in headless Chromium on
  ``/deepvid/?view=compare``, first load (server cache cold) and a reload (target <= 2 s);
- ``deepvid compare`` (CLI, self-contained page) wall time and page size;
- per-step sink cost (records + metrics upload; the step images are measured separately because
  they go out on a background thread).
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
    sink = MLflowSink(run_id, client=client, viewer_every=10, log_images=log_images)
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
                page.locator("[data-testid=diff-map] canvas").first.wait_for(
                    state="visible", timeout=120_000)
                times.append(time.perf_counter() - t)
        finally:
            browser.close()
    return times


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
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
