"""TensorBoard benchmark: the DeepVID tab at 64 instances x 200 steps, against TensorBoard's own
images dashboard on the same number of images.

Workload: 64 tracked instances x 200 steps of 28x28x1 records with 10 classes and 32 neighbour
images per instance, written through :class:`~deepvid_plugin.tensorboard.TensorBoardSink` into
one run. The records come from ``tests.factories.make_record`` (the fixture every test uses): the
weight maps are smooth fields (box-blurred Gaussian noise, a fixed part per instance plus a
per-step drift), not white noise, so they compress as a real student's weights would rather
than not at all. Measured:

- bytes on disk per instance-step (the event file divided by 64 x 200);
- p50/p95 latency of the ``timeline`` route (one instance) and of the overview (the
  ``instances`` route, all 12,800 step summaries) against a real ``tensorboard`` subprocess under
  ``--load_fast=false`` (Python multiplexer) and ``--load_fast=true`` (RustBoard), after warm-up,
  ``REQUESTS`` sequential requests each, sent as a browser does (``Accept-Encoding: gzip``,
  body read and decompressed);
- time until the overview is drawn in headless Chromium: from ``page.goto(<tb>/#deepvid)`` until
  the DeepVID iframe shows the grid and every overview cell inside the viewport has its weight
  map canvas (cells further away paint lazily as they scroll in). Median of ``LOADS`` page loads
  in fresh browser contexts, after one warm-up load.

Anchor: the same 64 x 200 28x28 images written with ``SummaryWriter.add_image`` (64 tags x 200
steps, ``--samples_per_plugin images=200`` so every step is kept, as the DeepVID loader keeps every
step of its own data), timed from ``page.goto(<tb>/#images)`` until every image card in the
viewport shows its decoded image. Its cards show one step each (with a slider), the DeepVID grid
shows every step; both load lazily what is off-screen.

Then, on the runs of ``deepvid demo`` (benchmarks/story_views.py; ``DEEPVID_BENCH_DEMO_OUT``
reuses a demo's output), under both loaders: the ``compare`` route (repeated, and the first
request of each kind and class), and the time each view of the story takes to draw in the tab
(timeline, compare, Dissection, Summit), with compare's "Map of" and kind changes.

``DEEPVID_BENCH_QUICK=1`` shrinks everything to a smoke run whose numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import tb_story
from benchmarks.story_views import demo_output

QUICK = os.environ.get("DEEPVID_BENCH_QUICK") == "1"
INSTANCES, STEPS = (8, 12) if QUICK else (64, 200)
CLASSES, SIZE, N_SHOWN = 10, 28, 32
REQUESTS, WARMUP, LOADS = (5, 1, 1) if QUICK else (20, 3, 3)
RUN = "bench"
TARGET_BYTES = 20 * 1024  # per instance-step, <=
TARGET_TIMELINE_P95 = 0.100  # s, <=
TARGET_DRAWN = 1.5  # s, <=
TARGET_OVERVIEW_KB = 2048  # the overview (instances) answer at 64 x 200, KiB of JSON, <=
LOAD_TIMEOUT = 60.0 if QUICK else 300.0  # s for a server to have read the whole logdir

FRAME = "iframe[src*='plugin_entry.html?name=deepvid']"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


# ---- writing -----------------------------------------------------------------------------------
def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_deepvid(root: Path) -> dict[str, Any]:
    from deepvid_plugin.tensorboard import TensorBoardSink
    from tests.factories import make_record

    run_dir = root / RUN
    t_make = t_write = 0.0
    with TensorBoardSink(run_dir) as sink:
        for step in range(STEPS):
            for i in range(INSTANCES):
                t0 = time.perf_counter()
                rec = make_record(f"test-{i}", step, n_classes=CLASSES, size=SIZE,
                                  n_shown=N_SHOWN)
                t1 = time.perf_counter()
                sink.write(rec, step)
                t_write += time.perf_counter() - t1
                t_make += t1 - t0
    total = _dir_bytes(run_dir)
    # What the weight maps cost inside one stored record: the same record with zero weights.
    rec = make_record("test-0", STEPS // 2, n_classes=CLASSES, size=SIZE, n_shown=N_SHOWN)
    stored = len(rec.without_neighbour_images().encode())
    zeroed = dataclasses.replace(rec, weights=np.zeros_like(rec.weights))
    weights = stored - len(zeroed.without_neighbour_images().encode())
    return {"bytes": total, "make_s": t_make, "write_s": t_write, "record_bytes": stored,
            "weights_bytes": weights}


def write_images(root: Path) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    from tests.factories import make_record

    # The same instance images the DeepVID run shows (float in [0, 1], CHW), one tag each.
    images = [make_record(f"test-{i}", 0, n_classes=CLASSES, size=SIZE, n_shown=1).image
              for i in range(INSTANCES)]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    writer = SummaryWriter(str(root / RUN))
    for step in range(STEPS):
        for i, img in enumerate(images):
            # A little per-step change, so every step is a different image, as a weight map is.
            frame = np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1)
            writer.add_image(f"instance/test-{i}", frame, step)
    writer.close()
    return {"bytes": _dir_bytes(root / RUN), "write_s": time.perf_counter() - t0}


# ---- servers -----------------------------------------------------------------------------------
def _get(url: str, timeout: float = 120.0) -> tuple[int, bytes]:
    """Status and decoded body of a GET made the way a browser makes it (gzip accepted)."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body, status, enc = r.read(), r.status, r.headers.get("Content-Encoding")
    except urllib.error.HTTPError as e:
        body, status, enc = e.read(), e.code, e.headers.get("Content-Encoding")
    return status, gzip.decompress(body) if enc == "gzip" else body


def latency(url: str) -> dict[str, float]:
    import json

    for _ in range(WARMUP):
        status, body = _get(url)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}: {body[:300]!r}")
    times = []
    for _ in range(REQUESTS):
        t0 = time.perf_counter()
        status, body = _get(url)
        times.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}: {body[:300]!r}")
    json.loads(body)  # a real answer, not an error page
    times.sort()
    return {"p50": statistics.median(times),
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
            "kb": len(body) / 1024}


def _wait_loaded(url: str, ok, what: str) -> float:
    import json

    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < LOAD_TIMEOUT:
        try:
            status, body = _get(url)
            last = (status, body[:200])
            if status == 200 and ok(json.loads(body)):
                return time.monotonic() - t0
        except OSError as e:
            last = e
        time.sleep(2.0)
    raise TimeoutError(f"{what}: not fully loaded after {LOAD_TIMEOUT:.0f}s; last: {last!r}")


def start_server(logdir: Path, load_fast: str, extra_args=()):
    from tests.e2e.fixtures_tensorboard import _Server

    server = _Server(logdir, load_fast, list(extra_args))
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


# ---- browser -----------------------------------------------------------------------------------
# Every overview cell inside the iframe's viewport has its canvas, and there is at least one.
_DEEPVID_DRAWN = """() => {
  const cells = [...document.querySelectorAll('[data-testid=overview-cell]')];
  if (!cells.length) return false;
  const W = window.innerWidth, H = window.innerHeight;
  const visible = cells.filter(c => { const r = c.getBoundingClientRect();
    return r.bottom > 0 && r.right > 0 && r.top < H && r.left < W; });
  return visible.length > 0 && visible.every(c => c.querySelector('canvas'))
    ? {n: visible.length, t: performance.now()} : false;
}"""
# Every image inside the viewport shows its decoded picture, and there is at least one. The
# images dashboard is Polymer: its <img>s live in shadow roots, so the walk goes into them.
_IMAGES_DRAWN = """() => {
  const imgs = [];
  const walk = (root) => { for (const e of root.querySelectorAll('*')) {
    if (e.tagName === 'IMG') imgs.push(e);
    if (e.shadowRoot) walk(e.shadowRoot); } };
  walk(document);
  const W = window.innerWidth, H = window.innerHeight;
  const visible = imgs.filter(i => { const r = i.getBoundingClientRect();
    return r.width > 0 && r.bottom > 0 && r.right > 0 && r.top < H && r.left < W
      && i.src.includes('/data/plugin/images/individualImage'); });
  return visible.length > 0 && visible.every(i => i.complete && i.naturalWidth > 0)
    ? {n: visible.length, t: performance.now()} : false;
}"""

def _deepvid_frame(page):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for fr in page.frames:
            if "plugin_entry.html?name=deepvid" in fr.url:
                return fr
        page.wait_for_timeout(5)
    raise TimeoutError("the DeepVID iframe did not appear")


def time_drawn(browser, url: str, frame_of, script: str) -> dict[str, Any]:
    """One page load in a fresh context: seconds from ``page.goto`` until ``script`` holds in
    the frame ``frame_of(page)`` (``s``), the same measured from that frame's own navigation
    start (``in_frame_s``: for the DeepVID iframe, the tab's own share), and how many cells or
    images were visible and drawn (``n``)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        t0 = time.perf_counter()
        page.goto(url, wait_until="commit")
        frame = frame_of(page)
        handle = frame.wait_for_function(script, timeout=120_000, polling="raf")
        elapsed = time.perf_counter() - t0
        got = handle.json_value()
    finally:
        context.close()
    if errors:
        raise RuntimeError(f"{url}: the page raised {errors[:3]}")
    return {"s": elapsed, "in_frame_s": got["t"] / 1e3, "n": int(got["n"])}


def browser_times(browser, url: str, frame_of, script: str) -> dict[str, Any]:
    """The first load (the server's caches cold, as right after TensorBoard starts or new data
    arrives) and the median of ``LOADS`` loads after it."""
    first = time_drawn(browser, url, frame_of, script)
    loads = [time_drawn(browser, url, frame_of, script) for _ in range(LOADS)]
    secs = sorted(x["s"] for x in loads)
    return {"first": first["s"], "median": statistics.median(secs), "min": secs[0],
            "max": secs[-1], "in_frame": statistics.median(x["in_frame_s"] for x in loads),
            "drawn": loads[-1]["n"]}


# ---- the benchmark -----------------------------------------------------------------------------
def run() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"this benchmark needs Debian's chromium at {CHROMIUM}")
    tmp = Path(tempfile.mkdtemp(prefix="deepvid-bench-tb-"))
    rows: list[dict[str, Any]] = []
    notes: list[str] = [f"load average at start {os.getloadavg()[0]:.1f} on "
                        f"{os.cpu_count()} cores (other work on the machine slows every "
                        "number here alike)"]
    try:
        dv_root, img_root = tmp / "deepvid", tmp / "images"
        wrote = write_deepvid(dv_root)
        per_step = wrote["bytes"] / (INSTANCES * STEPS)
        notes.append(
            f"one stored record (no neighbour images) is {wrote['record_bytes']} B, of which the "
            f"{CLASSES} float16 weight maps are {wrote['weights_bytes']} B "
            f"({wrote['weights_bytes'] / wrote['record_bytes']:.0%}): smooth maps at float16 "
            "keep ~14 bits of noise per value that zlib cannot remove; the step summary the "
            "overview reads adds ~0.7 KB")
        img = write_images(img_root)
        rows.append({"measure": "bytes on disk per instance-step", "loader": "",
                     "value": round(per_step), "unit": "B",
                     "detail": f"{wrote['bytes'] / 2**20:.1f} MiB in all; write "
                               f"{wrote['write_s']:.1f} s ({wrote['write_s'] / (INSTANCES * STEPS) * 1e3:.2f}"
                               f" ms/record), records made in {wrote['make_s']:.1f} s"})
        rows.append({"measure": "anchor: add_image bytes per image", "loader": "",
                     "value": round(img["bytes"] / (INSTANCES * STEPS)), "unit": "B",
                     "detail": f"{img['bytes'] / 2**20:.1f} MiB, written in {img['write_s']:.1f} s"})

        expected = {"run": RUN, "instances": INSTANCES, "steps": STEPS}
        api = "/data/plugin/deepvid/"
        timeline_p95: dict[str, float] = {}
        overview_kb: dict[str, float] = {}
        drawn: dict[str, float] = {}
        in_frame: dict[str, float] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=CHROMIUM_ARGS)
            try:
                for load_fast in ("false", "true"):
                    server = start_server(dv_root, load_fast)
                    try:
                        base = server.url
                        # Events load in file order, so once the last instance written shows
                        # its last step, the whole run is in (a cheap poll: one series).
                        loaded = _wait_loaded(
                            base + api + "timeline?" + urllib.parse.urlencode(
                                {"run": RUN, "instance": f"test-{INSTANCES - 1}"}),
                            lambda b: len(b["steps"]) == STEPS,
                            f"deepvid logdir (load_fast={load_fast})")
                        _wait_loaded(base + api + "runs",
                                     lambda b: [{k: r[k] for k in expected} for r in b["runs"]]
                                     == [expected], f"deepvid runs (load_fast={load_fast})")
                        q = urllib.parse.urlencode
                        tl = latency(base + api + "timeline?" + q({"run": RUN,
                                                                    "instance": "test-7"}))
                        ov = latency(base + api + "instances?" + q({"run": RUN}))
                        overview_kb[load_fast] = ov["kb"]
                        timeline_p95[load_fast] = tl["p95"]
                        for name, m in (("timeline (1 instance)", tl),
                                        ("overview (instances)", ov)):
                            rows.append({"measure": f"{name} latency", "loader": load_fast,
                                         "value": round(m["p50"] * 1e3, 1), "unit": "ms p50",
                                         "p95_ms": round(m["p95"] * 1e3, 1),
                                         "detail": f"{m['kb']:.0f} KiB JSON; logdir read in "
                                                   f"{loaded:.0f} s"})
                        b = browser_times(browser, base + "/#deepvid", _deepvid_frame,
                                          _DEEPVID_DRAWN)
                        drawn[load_fast] = b["median"]
                        in_frame[load_fast] = b["in_frame"]
                        rows.append({"measure": "DeepVID overview drawn in Chromium",
                                     "loader": load_fast, "value": round(b["median"], 3),
                                     "unit": "s median", "p95_ms": None,
                                     "detail": f"{LOADS} loads, min {b['min']:.3f} s, max "
                                               f"{b['max']:.3f} s; {b['in_frame']:.3f} s of it "
                                               f"inside the DeepVID iframe; first load (cold "
                                               f"cache) {b['first']:.3f} s; {b['drawn']} "
                                               "visible cells drawn"})
                    finally:
                        server.stop()
                demo, how = demo_output(tmp)
                story = {lf: tb_story.measure(browser, demo / "runs", lf, start_server, latency, _get)
                         for lf in ("false", "true")}
                # images=N, not 0: the images plugin passes its hint on as read_blob_sequences'
                # downsample, and downsample=0 returns no image at all.
                server = start_server(img_root, "true",
                                      ["--samples_per_plugin", f"images={STEPS}"])
                try:
                    base = server.url
                    _wait_loaded(base + "/data/plugin/images/tags",
                                 lambda b: len(b.get(RUN, {})) == INSTANCES, "images logdir")
                    _wait_loaded(base + "/data/plugin/images/images?" + urllib.parse.urlencode(
                        {"run": RUN, "tag": f"instance/test-{INSTANCES - 1}", "sample": 0}),
                        lambda b: len(b) == STEPS, "images logdir (every step)")
                    anchor = browser_times(browser, base + "/#images", lambda page: page.main_frame,
                                           _IMAGES_DRAWN)
                finally:
                    server.stop()
            finally:
                browser.close()
        rows.append({"measure": "anchor: TensorBoard images dashboard drawn", "loader": "true",
                     "value": round(anchor["median"], 3), "unit": "s median", "p95_ms": None,
                     "detail": f"{LOADS} loads, min {anchor['min']:.3f} s, max "
                               f"{anchor['max']:.3f} s; first load {anchor['first']:.3f} s; "
                               f"{anchor['drawn']} visible images drawn"})
        worst_drawn = max(drawn.values())
        ratio = worst_drawn / anchor["median"]
        rows.append({"measure": "ratio: DeepVID overview / images dashboard", "loader": "",
                     "value": round(ratio, 2), "unit": "x", "p95_ms": None,
                     "detail": "slower loader's median over the anchor's median"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    notes.append(f"load average at the end {os.getloadavg()[0]:.1f}")
    notes.append("drawn = every overview cell inside the 1440x900 viewport has its weight-map "
                 "canvas (the grid paints lazily as it scrolls); the time runs from page.goto, "
                 "so it includes TensorBoard's own page and the tab's iframe, as the anchor's "
                 "does")

    story_rows, story_targets = tb_story.rows_and_targets(story, how)
    rows.extend(story_rows)
    worst_kb = max(overview_kb.values())
    worst_tl = max(timeline_p95.values())
    targets = [
        {"name": "bytes on disk per instance-step", "value": round(per_step), "target":
            f"<= {TARGET_BYTES}", "met": per_step <= TARGET_BYTES, "note": "20 KiB"},
        {"name": "timeline p95 (worse loader), s", "value": round(worst_tl, 4),
         "target": f"<= {TARGET_TIMELINE_P95}", "met": worst_tl <= TARGET_TIMELINE_P95,
         "note": ", ".join(f"load_fast={k}: {v * 1e3:.1f} ms" for k, v in timeline_p95.items())},
        {"name": "overview drawn in Chromium (worse loader), s", "value": round(worst_drawn, 3),
         "target": f"<= {TARGET_DRAWN}", "met": worst_drawn <= TARGET_DRAWN,
         "note": ", ".join(f"load_fast={k}: {v:.3f} s ({in_frame[k]:.3f} s inside the tab's "
                           "iframe)" for k, v in drawn.items())
                 + f"; TensorBoard's images dashboard: {anchor['median']:.3f} s"},
        {"name": "overview payload (instances answer), KiB", "value": round(worst_kb),
         "target": f"<= {TARGET_OVERVIEW_KB}", "met": worst_kb <= TARGET_OVERVIEW_KB,
         "note": f"{INSTANCES} x {STEPS}; the maps come with each row's timeline as it scrolls in"},
        *story_targets,
    ]
    return {
        "title": "TensorBoard: the DeepVID tab at 64 instances x 200 steps",
        "settings": {
            "workload": f"{INSTANCES} instances x {STEPS} steps, {CLASSES} classes, 1x{SIZE}x{SIZE}, "
                        f"{N_SHOWN} neighbour images per instance, one run",
            "records": "tests.factories.make_record: smooth (box-blurred) weight maps, "
                       "per-instance part plus per-step drift",
            "latency": f"{REQUESTS} sequential GETs after {WARMUP} warm-up, gzip accepted, "
                       "body decompressed",
            "browser": f"headless Debian chromium 1440x900, median of {LOADS} loads in fresh "
                       "contexts after 1 warm-up",
            "anchor": f"SummaryWriter.add_image, {INSTANCES} tags x {STEPS} steps, "
                      f"--load_fast=true --samples_per_plugin images={STEPS}",
            "demo": "the demo's clean, shortcut and distilled runs (benchmarks/story_views.py), "
                    f"compare of {tb_story.INSTANCE}, browser 1440x900",
            "quick": QUICK,
        },
        "rows": rows,
        "targets": targets,
        "notes": notes,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1, default=str))
