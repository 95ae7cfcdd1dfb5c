"""Run the benchmarks and write ``benchmarks/RESULTS.md``.

    python -m benchmarks.run                   # every benchmarks/bench_*.py
    python -m benchmarks.run --only engine     # a subset (repeat --only or separate with commas)
    python -m benchmarks.run --list            # what would run

A benchmark is a module ``benchmarks/bench_<name>.py`` with ``run() -> dict``::

    {"title": str,                 # section heading
     "settings": dict,             # what was measured, how (sizes, repeats, seeds...)
     "rows": [dict, ...],          # the table; columns are the union of keys, first-seen order
     "targets": [                  # optional
         {"name": str, "value": float, "target": "<= 1.5", "met": bool, "note": str}],
     "notes": str | [str, ...]}    # optional free text (e.g. why a target was missed)

``met`` is the module's verdict; when ``target`` reads ``"<= x"`` / ``">= x"`` and ``value`` is a
number the runner also states the margin ("missed by 0.3 (20%)").

Each result is also stored as ``benchmarks/results/<name>.json`` (with the machine it ran on), and
RESULTS.md is rendered from all stored results: ``--only engine`` refreshes the engine section and
keeps the others, each section saying when and where it was measured. A module that raises (or
returns something malformed) is reported with its traceback; the others still run, and the exit
status is non-zero at the end. A missed target is a result, not a failure: it does not change the
exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import pkgutil
import platform
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREFIX = "bench_"


# ---- discovery ---------------------------------------------------------------------------------
def available() -> list[str]:
    """Names (without the ``bench_`` prefix) of the benchmark modules present, sorted."""
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules([str(HERE)])
                  if m.name.startswith(PREFIX))


def select(only: list[str] | None) -> list[str]:
    names = available()
    if not only:
        return names
    wanted = [n.strip().removeprefix(PREFIX) for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {unknown}; available: {names}")
    return [n for n in names if n in wanted]


# ---- machine -----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    try:
        import numpy
        info["numpy"] = numpy.__version__
    except ImportError:
        info["numpy"] = None
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---- running -----------------------------------------------------------------------------------
def run_one(name: str) -> dict[str, Any]:
    """Import and run one benchmark; never raises (a failure becomes a result with a traceback)."""
    start = time.perf_counter()
    entry: dict[str, Any] = {"name": name, "module": f"benchmarks.{PREFIX}{name}",
                             "machine": machine()}
    try:
        module = importlib.import_module(entry["module"])
        run = getattr(module, "run", None)
        if not callable(run):
            raise TypeError(f"{entry['module']}: expected a function run() -> dict, got "
                            f"{type(run).__name__}")
        entry["result"] = validate(run(), entry["module"])
        entry["status"] = "ok"
    except Exception:  # report it in RESULTS.md and go on with the other benchmarks
        entry["status"] = "failed"
        entry["traceback"] = traceback.format_exc()
    entry["wall_s"] = round(time.perf_counter() - start, 1)
    return entry


def validate(result: Any, where: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise TypeError(f"{where}.run(): expected a dict, got {type(result).__name__}")
    for key, typ in (("title", str), ("settings", dict), ("rows", list)):
        if not isinstance(result.get(key), typ):
            raise TypeError(f"{where}.run(): expected {key!r} to be a {typ.__name__}, got "
                            f"{type(result.get(key)).__name__}")
    if not all(isinstance(r, dict) for r in result["rows"]):
        raise TypeError(f"{where}.run(): expected 'rows' to be a list of dicts")
    targets = result.get("targets", [])
    if not isinstance(targets, list) or not all(
            isinstance(t, dict) and {"name", "value", "target", "met"} <= t.keys() for t in targets):
        raise TypeError(f"{where}.run(): expected 'targets' to be a list of dicts with keys "
                        f"name, value, target, met (and optionally note), got {targets!r}")
    return result


# ---- storage -----------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    """numpy/torch scalars and arrays, paths... -> plain JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def save(entry: dict[str, Any], results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{entry['name']}.json"
    path.write_text(json.dumps(entry, indent=1, default=_jsonable, allow_nan=True) + "\n")


def load_all(results_dir: Path) -> list[dict[str, Any]]:
    entries = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            entries.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            entries.append({"name": path.stem, "status": "failed",
                            "traceback": f"could not read stored result {path}: {e}"})
    return entries


# ---- rendering ---------------------------------------------------------------------------------
def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if v is None:
        return ""
    return str(v)


def _cell(v: Any) -> str:
    return fmt(v).replace("|", "\\|").replace("\n", "<br>")


def table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return out


_TARGET = re.compile(r"^\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


def margin(value: Any, target: Any, met: bool) -> str:
    """'missed by 0.31 (21%)' / 'met, 0.2 (13%) to spare' when the target is '<= x' or '>= x'."""
    m = _TARGET.match(str(target))
    if not m or isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    bound = float(m.group(2))
    gap = abs(float(value) - bound)
    rel = f" ({gap / abs(bound):.0%})" if bound else ""
    return f"missed by {fmt(gap)}{rel}" if not met else f"{fmt(gap)}{rel} to spare"


def render(entries: list[dict[str, Any]], current: dict[str, Any]) -> str:
    lines = ["# Benchmark results", "",
             "Written by `make bench` (`python -m benchmarks.run`); do not edit by hand. Each "
             "section says when and on which machine it was measured; `--only NAME` refreshes "
             "one section. Timings are wall-clock seconds on CPU unless stated.", "",
             "## Machine of the latest run", ""]
    lines += [f"- {k}: {fmt(v)}" for k, v in current.items()]
    summary = []
    for e in entries:
        for t in (e.get("result") or {}).get("targets", []):
            summary.append({"benchmark": e["name"], "target": t["name"], "value": t["value"],
                            "goal": t["target"], "status": "met" if t["met"] else "MISSED",
                            "margin": margin(t["value"], t["target"], t["met"])})
        if e.get("status") != "ok":
            summary.append({"benchmark": e["name"], "target": "(benchmark ran)", "value": None,
                            "goal": "no error", "status": "FAILED", "margin": ""})
    if summary:
        lines += ["", "## Targets", ""] + table(summary)
    for e in entries:
        lines += ["", "---", ""] + section(e)
    return "\n".join(lines) + "\n"


def section(e: dict[str, Any]) -> list[str]:
    res = e.get("result") or {}
    title = res.get("title") or e["name"]
    lines = [f"## {title}", "", f"`benchmarks/{PREFIX}{e['name']}.py` — status: "
             f"**{e.get('status', 'unknown')}**, wall {fmt(e.get('wall_s'))} s"]
    mach = e.get("machine")
    if mach:
        lines.append(f"Measured {mach.get('date')} on {mach.get('cpu')}, {mach.get('cores')} cores, "
                     f"torch {mach.get('torch')} with {mach.get('torch_threads')} threads, numpy "
                     f"{mach.get('numpy')}, load average {mach.get('load_avg_1m')} at start.")
    if e.get("status") != "ok":
        lines += ["", "```", (e.get("traceback") or "").rstrip(), "```"]
        return lines
    if res.get("settings"):
        lines += ["", "### Settings", ""] + [f"- {k}: {fmt(v)}" for k, v in res["settings"].items()]
    lines += ["", "### Results", ""] + table(res["rows"])
    if res.get("targets"):
        rows = [{"target": t["name"], "value": t["value"], "goal": t["target"],
                 "status": "met" if t["met"] else "MISSED",
                 "margin": margin(t["value"], t["target"], t["met"]), "note": t.get("note", "")}
                for t in res["targets"]]
        lines += ["", "### Targets", ""] + table(rows)
    notes = res.get("notes")
    if notes:
        lines += ["", "### Notes", ""]
        lines += [f"- {n}" for n in ([notes] if isinstance(notes, str) else notes)]
    return lines


# ---- CLI ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only this benchmark (bench_NAME.py); repeat or comma-separate")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="markdown report path")
    ap.add_argument("--results-dir", type=Path, default=HERE / "results",
                    help="where each benchmark's JSON result is stored")
    args = ap.parse_args(argv)
    names = select(args.only)
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print("no benchmarks/bench_*.py modules found", file=sys.stderr)
        return 1
    failed = []
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        entry = run_one(name)
        save(entry, args.results_dir)
        print(f"[bench] {name}: {entry['status']} in {entry['wall_s']} s", flush=True)
        if entry["status"] != "ok":
            print(entry["traceback"], file=sys.stderr)
            failed.append(name)
    known = set(available())
    entries = [e for e in load_all(args.results_dir) if e.get("name") in known]
    args.out.write_text(render(entries, machine()))
    print(f"[bench] wrote {args.out}")
    if failed:
        print(f"[bench] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
