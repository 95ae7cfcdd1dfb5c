"""`deepvid demo`: the whole shortcut story (three runs, every kind) against the digits demo.

Runs the real console script with ``--no-serve`` into a temporary folder: ``deepvid demo`` (the
default marked-digits story: clean, shortcut and distilled runs), ``deepvid demo --data shapes``
(the same story on rendered shapes) and ``deepvid demo --data digits`` (the single-run demo), and
reports their wall-clock times and the ratios to the digits demo. Target: the default story
<= 180 s on the 2-core box. ``DEEPVID_BENCH_QUICK=1`` runs all three with ``--quick``
(tiny sizes: a smoke test of the benchmark, not the real target).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

QUICK = os.environ.get("DEEPVID_BENCH_QUICK", "") not in ("", "0")
TARGET_S = 180.0


def _demo(out: str, *flags: str) -> float:
    exe = os.path.join(os.path.dirname(sys.executable), "deepvid")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t0 = time.perf_counter()
    proc = subprocess.run([exe, "demo", "--no-serve", "--out", out, *flags],
                          capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"deepvid demo {' '.join(flags)}: exit {proc.returncode}\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds


def run() -> dict[str, Any]:
    extra = ("--quick",) if QUICK else ()
    with tempfile.TemporaryDirectory(prefix="deepvid-bench-demo-") as tmp:
        digits_s = _demo(os.path.join(tmp, "digits"), "--data", "digits", *extra)
        story_s = _demo(os.path.join(tmp, "story"), *extra)
        shapes_s = _demo(os.path.join(tmp, "shapes"), "--data", "shapes", *extra)
    return {
        "title": "deepvid demo: shortcut stories vs. the single-run digits demo",
        "settings": {"quick": QUICK, "flags": list(extra), "target_s": TARGET_S,
                     "cpu_count": os.cpu_count()},
        "rows": [{"demo": "deepvid demo --data digits (one run)", "seconds": round(digits_s, 1),
                  "x digits": 1.0},
                 {"demo": "deepvid demo (marked digits: clean + shortcut + distilled, every kind)",
                  "seconds": round(story_s, 1), "x digits": round(story_s / digits_s, 2)},
                 {"demo": "deepvid demo --data shapes (clean + shortcut, every kind)",
                  "seconds": round(shapes_s, 1), "x digits": round(shapes_s / digits_s, 2)}],
        "targets": [{"name": "default demo (story) wall clock (s)", "value": round(story_s, 1),
                     "target": f"<= {TARGET_S:g}", "met": story_s <= TARGET_S,
                     "note": "QUICK sizes: not the real target" if QUICK else ""}],
        "notes": "Wall clock of the console script, start-up and MLflow store creation included.",
    }


if __name__ == "__main__":
    print(run())
