"""The committed frontend build equals a fresh build of frontend/ (runs .ci/frontend-check).

Installs from git ship the built files, so a source change that was not rebuilt (or a build that
is not reproducible) would silently serve stale code. Needs Node/npm and the npm registry; without
npm the test skips locally and fails under CI=true.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "deepvid_plugin" / "static"


def test_static_files_are_the_fixed_set():
    names = sorted(p.name for p in STATIC.iterdir())
    assert names == ["deepvid.css", "deepvid.js", "index.js"]
    entry = (STATIC / "index.js").read_text(encoding="utf-8")
    # TensorBoard's dynamic-plugin contract: an ES module exporting render().
    assert "export async function render()" in entry
    assert "import.meta.url" in entry


@pytest.mark.timeout(600)
def test_committed_build_matches_fresh_build():
    if shutil.which("npm") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("npm is missing: CI must check the committed frontend build")
        pytest.skip("npm is not installed; cannot rebuild the frontend")
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "frontend-check")], cwd=ROOT,
                          capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
