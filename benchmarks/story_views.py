"""The demo's story in the browser, timed: what bench_tensorboard (both loaders) and bench_mlflow
measure on the runs of ``deepvid demo`` (clean, shortcut, distilled).

For each view (timeline, compare, Dissection, Summit) the time from ``page.goto`` until the view
is drawn, and the part of it inside the DeepVID frame (``performance.now()`` of the frame when it
is drawn: its clock starts when the frame starts to load, so in TensorBoard this is the time
beyond TensorBoard's own page; the MLflow app is its own page, the two are the same there). And,
on a drawn compare view, how long a "Map of" change and a kind change take until the new answer
is drawn (in the frame, from the change to the redraw).

The demo is run into a temporary folder unless ``DEEPVID_BENCH_DEMO_OUT`` names the output of
one (``deepvid demo --no-serve --out DIR``), so a bench run can reuse it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_ENV = "DEEPVID_BENCH_DEMO_OUT"
QUICK = os.environ.get("DEEPVID_BENCH_QUICK") == "1"
LOADS = 1 if QUICK else 3

#: the view is drawn: its main picture is on screen and nothing is loading (frame's clock, ms)
DRAWN = {
    "timeline": """() => {
      const cells = [...document.querySelectorAll('[data-testid=overview-cell]')];
      const H = innerHeight, W = innerWidth;
      const vis = cells.filter(c => { const r = c.getBoundingClientRect();
        return r.bottom > 0 && r.right > 0 && r.top < H && r.left < W; });
      return vis.length > 0 && vis.every(c => c.querySelector('canvas'))
        && document.querySelector('[data-testid=metric-strip]') ? performance.now() : false; }""",
    "compare": """() => {
      const b = document.querySelector('[data-testid=compare-map-b] canvas');
      const o = document.querySelector('.compare-out');
      return b && o && !o.classList.contains('refreshing') ? performance.now() : false; }""",
    "netdissect": """() => document.querySelector('[data-testid=nd-detail][data-loaded=true] [data-testid=nd-unit-row]')
      ? performance.now() : false""",
    "summit": """() => document.querySelector('[data-testid=summit-graph] [data-testid=summit-node]')
      && document.querySelector('[data-testid=summit-strip-cell]') ? performance.now() : false""",
}


def demo_output(tmp: Path) -> tuple[Path, str]:
    """The demo's output folder, and how it was made."""
    given = os.environ.get(DEMO_ENV)
    if given:
        return Path(given), f"reused {given} ({DEMO_ENV})"
    out = tmp / "demo"
    cmd = [sys.executable, "-m", "deepvid_plugin.cli", "demo", "--no-serve", "--out", str(out)]
    if QUICK:
        cmd.insert(-2, "--quick")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=3600)
    return out, f"`deepvid demo{' --quick' if QUICK else ''} --no-serve` in {time.perf_counter() - t:.0f} s"


def run_names(names: list[str]) -> dict[str, str]:
    """clean / shortcut / distilled -> the run's name (the demo stamps them with a date)."""
    out = {}
    for which in ("clean", "shortcut", "distilled"):
        found = [n for n in names if f"-{which}-" in n]
        if len(found) != 1:
            raise RuntimeError(f"expected one demo run named *-{which}-*, got {names}")
        out[which] = found[0]
    return out


class Site:
    """Where the views live: TensorBoard's tab (an iframe, links prefixed ``deepvid_``) or the
    MLflow app's page (``/deepvid/?experiment=...``)."""

    def __init__(self, base: str, kind: str, experiment: str | None = None):
        self.base, self.kind, self.experiment = base, kind, experiment

    def url(self, **params: str) -> str:
        if self.kind == "tensorboard":
            q = urllib.parse.urlencode({f"deepvid_{k}": v for k, v in params.items()})
            return f"{self.base}/?{q}#deepvid"
        q = urllib.parse.urlencode({"experiment": self.experiment or "", **params})
        return f"{self.base}/deepvid/?{q}"

    def frame(self, page) -> Any:
        if self.kind != "tensorboard":
            return page.main_frame
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for fr in page.frames:
                if "plugin_entry.html?name=deepvid" in fr.url:
                    return fr
            page.wait_for_timeout(5)
        raise TimeoutError("the DeepVID iframe did not appear")


def _load(browser, site: Site, view: str, params: dict[str, str],
          then: Callable[[Any], dict[str, float]] | None = None) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        t0 = time.perf_counter()
        page.goto(site.url(**params), wait_until="commit")
        frame = site.frame(page)
        drawn = frame.wait_for_function(DRAWN[view], timeout=120_000, polling="raf").json_value()
        got = {"total": time.perf_counter() - t0, "in_frame": drawn / 1e3}
        if then is not None:
            got.update(then(frame))
    finally:
        context.close()
    if errors:
        raise RuntimeError(f"{view}: the page raised {errors[:3]}")
    return got


def _change(frame, act: Callable[[], None], done: str) -> float:
    """Seconds, on the frame's clock, from an action until `done` holds."""
    t0 = frame.evaluate("performance.now()")
    act()
    t1 = frame.wait_for_function(done, timeout=120_000, polling="raf").json_value()
    return (t1 - t0) / 1e3


def _compare_changes(frame) -> dict[str, float]:
    title = "() => document.querySelector('[data-testid=compare-title]').textContent"
    before = frame.evaluate(title)
    done_class = f"""() => {{ const t = document.querySelector('[data-testid=compare-title]');
      const o = document.querySelector('.compare-out');
      return t && t.textContent !== {before!r} && !o.classList.contains('refreshing')
        ? performance.now() : false; }}"""
    cls = _change(frame, lambda: frame.locator("[data-testid=compare-class]").select_option("label"),
                  done_class)
    done_kind = """() => { const t = document.querySelector('[data-testid=compare-title][data-kind=gradcam]');
      const o = document.querySelector('.compare-out');
      return t && !o.classList.contains('refreshing') ? performance.now() : false; }"""
    kind = _change(frame, lambda: frame.locator("[data-testid=compare-kind-gradcam]").click(),
                   done_kind)
    return {"class_change": cls, "kind_change": kind}


def story_times(browser, site: Site, runs: dict[str, str], instance: str) -> dict[str, dict]:
    """Median over LOADS loads (after one warm-up) of each view's drawing time, and of the
    compare view's "Map of" and kind changes."""
    views = {
        "timeline": ({"view": "overview", "run": runs["shortcut"]}, None),
        "compare": ({"view": "compare", "a": runs["clean"], "b": runs["shortcut"],
                     "instance": instance}, _compare_changes),
        "netdissect": ({"view": "netdissect", "run": runs["shortcut"]}, None),
        "summit": ({"view": "summit", "run": runs["shortcut"]}, None),
    }
    out: dict[str, dict] = {}
    for view, (params, then) in views.items():
        first = _load(browser, site, view, params, then)
        loads = [_load(browser, site, view, params, then) for _ in range(LOADS)]
        out[view] = {key: statistics.median(x[key] for x in loads) for key in loads[0]}
        out[view]["first_total"] = first["total"]
        out[view]["max_in_frame"] = max(x["in_frame"] for x in loads)
    return out
