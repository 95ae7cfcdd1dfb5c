"""Take the screenshots of docs/demo.md, docs/ui.md and the README from a demo's output:
``docs/img/demo_*.png`` (TensorBoard's DeepVID tab, the MLflow app, MLflow's own run page and
charts, and the saved viewer in MLflow's 946-px artifact frame).

    .venv/bin/deepvid demo --no-serve --out /tmp/demo   # or reuse ./runs, ./mlflow.db
    .venv/bin/python docs/screenshots.py --out /tmp/demo

Starts TensorBoard on ``OUT/runs`` and ``mlflow server --app-name deepvid`` on ``OUT/mlflow.db``
(free ports on 127.0.0.1), drives Debian's headless Chromium with Playwright
(``executable_path=/usr/bin/chromium``, ``--no-sandbox``; Playwright's own browser download does not
work here) and stops both servers at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, ok, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read()
                if r.status == 200 and ok(body):
                    return
                last = body[:200]
        except OSError as e:  # not up yet
            last = e
        time.sleep(0.5)
    raise TimeoutError(f"{url}: not ready within {timeout:.0f}s (last: {last})")


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)


def _select_run(frame, page, which: str) -> None:
    """Pick the demo run whose name holds ``-which-`` (clean, shortcut, distilled)."""
    sel = frame.locator("[data-testid=run-select]")
    options = sel.locator("option")
    found = [options.nth(i).get_attribute("value") for i in range(options.count())
             if f"-{which}-" in options.nth(i).inner_text()]
    if len(found) != 1:
        raise RuntimeError(f"expected one run named *-{which}-*, got {options.all_inner_texts()}")
    sel.select_option(found[0])
    page.wait_for_timeout(1000)


def _open_detail(frame, page, instance: str) -> None:
    """Open the last step of ``instance`` in the detail drawer (the cell stays in view)."""
    row = frame.locator(f"[data-testid=instance-row][data-instance={instance}]")
    row.locator("[data-testid=overview-cell]").last.click()
    frame.locator("[data-testid=detail-panel][data-loaded=true]").wait_for()
    page.wait_for_timeout(1200)


def _close_detail(frame, page) -> None:
    frame.locator("[data-testid=detail-close]").click()
    page.wait_for_timeout(300)


def _shoot_views(frame, page, prefix: str, img: Path, instance: str) -> None:
    """The shortcut run's timelines with ``instance``'s detail open, Compare runs (clean vs
    shortcut, DeepVID and Grad-CAM), the shortcut run's Dissection and Summit pages, and the
    distilled run's teacher-vs-student timeline."""
    frame.locator("[data-testid=overview-cell][data-kind=deepvid]").first.wait_for()
    _select_run(frame, page, "shortcut")
    switch = frame.locator("[data-testid=kind-switch]")
    for kind in ("deepvid", "gradcam"):
        switch.locator(f"[data-testid=kind-{kind}]").click()
        frame.locator(f"[data-testid=overview-cell][data-kind={kind}] canvas").first.wait_for()
        frame.locator("[data-testid=metric-strip]").wait_for()
        _open_detail(frame, page, instance)
        page.screenshot(path=str(img / f"demo_{prefix}_{kind}.png"))
        _close_detail(frame, page)
    switch.locator("[data-testid=kind-deepvid]").click()
    frame.locator("[data-testid=tab-compare]").click()
    run_a = frame.locator("[data-testid=compare-run-a]")
    names = run_a.locator("option").all_inner_texts()
    run_a.select_option(label=next(n for n in names if "-clean-" in n))
    frame.locator("[data-testid=compare-run-b]").select_option(
        label=next(n for n in names if "-shortcut-" in n))
    frame.locator("[data-testid=compare-instance]").select_option(label=instance)
    frame.locator("[data-testid=compare-strip]").wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(img / f"demo_{prefix}_compare.png"))
    frame.locator("[data-testid=compare-kind-gradcam]").click()
    frame.locator("[data-testid=compare-title][data-kind=gradcam]").wait_for()
    page.wait_for_timeout(1200)
    page.screenshot(path=str(img / f"demo_{prefix}_compare_gradcam.png"))
    frame.locator("[data-testid=tab-overview]").click()
    _select_run(frame, page, "shortcut")
    for kind in ("netdissect", "summit"):
        frame.locator(f"[data-testid=tab-{kind}]").click()
        frame.locator(f"[data-testid=page-view][data-kind={kind}]").wait_for()
        page.wait_for_timeout(2500)
        if kind == "netdissect":  # the last layer, where the shortcut's colour detectors are
            layer = frame.locator("[data-testid=nd-layer-select]")
            layer.select_option(layer.locator("option").last.get_attribute("value"))
            page.wait_for_timeout(2000)
        page.screenshot(path=str(img / f"demo_{prefix}_{kind}.png"))
    frame.locator("[data-testid=tab-overview]").click()
    page.wait_for_timeout(1000)
    if frame.locator("[data-testid=run-select] option", has_text="-distilled-").count():
        _select_run(frame, page, "distilled")
        switch.locator("[data-testid=kind-cam_agreement]").click()
        frame.locator("[data-testid=overview-cell][data-kind=cam_agreement] canvas").first.wait_for()
        _open_detail(frame, page, instance)
        page.screenshot(path=str(img / f"demo_{prefix}_distilled.png"))


def _shoot_mlflow(page, ml: str, out: Path, img: Path, instance: str) -> None:
    """The MLflow app's compare view as it opens (clean vs shortcut), MLflow's own run page
    (description with the app's link, a handful of metrics) and its charts (the step cards),
    and the saved viewer in a 946-px frame, as MLflow's artifact browser shows it."""
    from mlflow import MlflowClient

    page.goto(ml + "/deepvid/?experiment=deepvid-demo&view=compare")
    page.locator("[data-testid=compare-strip]").wait_for()
    page.wait_for_timeout(1200)
    page.screenshot(path=str(img / "demo_mlflow_compare.png"))
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("deepvid-demo").experiment_id
    run = next(r for r in client.search_runs([exp]) if "-shortcut-" in r.info.run_name)
    for tab, name in (("", "demo_mlflow_run"), ("/model-metrics", "demo_mlflow_charts")):
        # tall enough for the first row of step cards under the charts
        page.set_viewport_size({"width": 1440, "height": 900 if tab == "" else 1180})
        page.goto(f"{ml}/#/experiments/{exp}/runs/{run.info.run_id}{tab}")
        page.wait_for_timeout(6000)
        close = page.locator("button[aria-label*='lose' i]").last  # MLflow's assistant panel
        if close.count():
            close.click()
            page.wait_for_timeout(800)
        if tab == "":
            page.get_by_text("Description", exact=True).first.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
        page.screenshot(path=str(img / f"{name}.png"))
    page.set_viewport_size({"width": 1440, "height": 900})
    viewer = Path(client.download_artifacts(run.info.run_id, "deepvid/viewer.html", str(out)))
    page.set_content("<!doctype html><body style='margin:0;background:#fff'></body>")
    page.evaluate("""html => {
        const url = URL.createObjectURL(new Blob([html], {type: 'text/html'}));
        const f = document.createElement('iframe');
        f.setAttribute('sandbox', 'allow-scripts');
        f.style.cssText = 'border:1px solid #ddd;width:946px;height:860px';
        f.src = url;
        document.body.appendChild(f);
    }""", viewer.read_text(encoding="utf-8"))
    frame = page.frame_locator("iframe")
    frame.locator("[data-testid=overview-cell] canvas").first.wait_for()
    _open_detail(frame, page, instance)
    page.screenshot(path=str(img / "demo_mlflow_viewer_946.png"), clip={"x": 0, "y": 0, "width": 950,
                                                                         "height": 864})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="the demo's --out folder (default: .)")
    parser.add_argument("--img", default=str(HERE / "img"), help="where the PNGs go")
    parser.add_argument("--instance", default="test-0", help="the instance the detail and "
                        "compare shots show (default: test-0)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    out, img = Path(args.out).resolve(), Path(args.img)
    img.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    tb_port, ml_port = _free_port(), _free_port()
    procs = [
        _start([str(bindir / "tensorboard"), "--logdir", str(out / "runs"), "--host",
                "127.0.0.1", "--port", str(tb_port)]),
        _start([str(bindir / "mlflow"), "server", "--backend-store-uri",
                f"sqlite:///{out / 'mlflow.db'}", "--app-name", "deepvid", "--host", "127.0.0.1",
                "--port", str(ml_port), "--workers", "1"]),
    ]
    try:
        tb, ml = f"http://127.0.0.1:{tb_port}", f"http://127.0.0.1:{ml_port}"
        _wait(tb + "/data/plugin/deepvid/runs", lambda b: len(json.loads(b)["runs"]) >= 2)
        _wait(ml + "/health", lambda b: True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.set_default_timeout(60_000)
                page.goto(tb + "/#deepvid")
                frame = page.frame_locator("iframe[src*='plugin_entry.html?name=deepvid']")
                _shoot_views(frame, page, "tensorboard", img, args.instance)
                _shoot_mlflow(page, ml, out, img, args.instance)
            finally:
                browser.close()
    finally:
        for proc in procs:  # only the servers this script started, by their process group
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    print(f"wrote {sorted(p.name for p in img.glob('demo_*.png'))} to {img}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
