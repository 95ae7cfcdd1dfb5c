"""Every public module imports on its own, in a fresh interpreter.

Import cycles only show up when a module is the *first* one imported (inside one test process
something else has usually imported its dependencies already), so each import runs in its own
subprocess.
"""

import subprocess
import sys

import pytest

MODULES = [
    "deepvid_plugin",
    "deepvid_plugin.distill",
    "deepvid_plugin.explain",
    "deepvid_plugin.explain.cam_agreement",
    "deepvid_plugin.explain.netdissect",
    "deepvid_plugin.explain.summit",
    "deepvid_plugin.kinds",
    "deepvid_plugin.api",
    "deepvid_plugin.callbacks",
    "deepvid_plugin.tensorboard.loader",
    "deepvid_plugin.mlflow",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
