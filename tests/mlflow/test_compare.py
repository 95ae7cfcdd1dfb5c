"""`deepvid compare`: the self-contained page, and its clear errors."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

from deepvid_plugin.api import snapshot_key
from deepvid_plugin.mlflow import compare
from tests.mlflow.runs import EVIL, STEPS


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="deepvid compare")
    compare.add_arguments(parser)
    return compare.run(parser.parse_args(list(argv)))


def inline_snapshot(html: str) -> dict:
    m = re.search(r"__DEEPVID_SNAPSHOT__=(.*?);</script>", html, re.S)
    assert m, "no inline snapshot"
    return json.loads(m.group(1))


def test_page_compares_the_shared_instances(two_runs, tmp_path, capsys):
    out = tmp_path / "compare.html"
    assert run_cli(two_runs.a, two_runs.b, "--tracking-uri", two_runs.url, "-o", str(out)) == 0
    html = out.read_text(encoding="utf-8")
    err = capsys.readouterr().err
    assert "different instance sets" in err and "only-b" in err
    assert 'data-view="compare"' in html and "run A vs run B" in html
    assert EVIL not in html and "<script src" not in html  # self-contained, names escaped
    snap = inline_snapshot(html)
    assert any("different instance sets" in w for w in snap["runs"]["warnings"])
    # The baseline (first run) against the other, in that order only; the page lists the pair.
    pair = (two_runs.a, two_runs.b)
    assert snap["runs"]["pairs"] == [list(pair)]
    for instance in ("a", "b", EVIL):
        cmp = snap[snapshot_key("compare", {"instance": instance, "runs": ",".join(pair),
                                           "kind": "deepvid"})]
        assert [m["step"] for m in cmp["maps"]] == list(STEPS)
        assert set(cmp["per_run"]) == set(pair)
        assert cmp["note"] and "3 they share" in cmp["note"]
        reverse = snapshot_key("compare", {"instance": instance, "runs": ",".join(pair[::-1]),
                                           "kind": "deepvid"})
        assert reverse not in snap
    assert not any(k.startswith("compare?instance=only-b") for k in snap)


def test_unknown_run_id(two_runs, tmp_path, capsys):
    out = tmp_path / "x.html"
    rc = run_cli(two_runs.a, "deadbeefdeadbeefdeadbeefdeadbeef", "--tracking-uri", two_runs.url,
                 "-o", str(out))
    assert rc == 2 and not out.exists()
    assert "'deadbeefdeadbeefdeadbeefdeadbeef' not found" in capsys.readouterr().err


def test_runs_without_deepvid_data(two_runs, mlflow_server, tmp_path, capsys):
    empty = mlflow_server.client().create_run(two_runs.experiment_id, run_name="empty")
    empty = empty.info.run_id
    out = tmp_path / "c.html"
    # two usable runs remain: the page is written and says which run was left out
    assert run_cli(two_runs.a, two_runs.b, empty, "--tracking-uri", two_runs.url,
                   "-o", str(out)) == 0
    assert f"{empty!r} has no DeepVID data" in capsys.readouterr().err
    assert any("no DeepVID data" in w for w in inline_snapshot(out.read_text())["runs"]["warnings"])
    # one usable run: nothing to compare
    assert run_cli(two_runs.a, empty, "--tracking-uri", two_runs.url, "-o",
                   str(tmp_path / "d.html")) == 2
    err = capsys.readouterr().err
    assert "nothing to compare" in err and empty in err


@pytest.mark.parametrize("argv", [["abc"], ["abc", "abc"]])
def test_needs_two_distinct_runs(argv, tmp_path, capsys):
    assert run_cli(*argv, "-o", str(tmp_path / "x.html")) == 2
    assert "RUN_ID" in capsys.readouterr().err


def test_cli_module_imports_no_mlflow():
    code = ("import sys, deepvid_plugin.mlflow.compare, deepvid_plugin.mlflow; "
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
