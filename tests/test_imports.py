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
    "deepvid_plugin.core.kinds",
    "deepvid_plugin.api",
    "deepvid_plugin.callbacks",
    "deepvid_plugin.tensorboard.loader",
    "deepvid_plugin.mlflow",
    "deepvid_plugin.demo.cli",
    *(f"deepvid_plugin.methods.{kind}.{part}"
      for kind in ("deepvid", "gradcam", "cam_agreement", "netdissect", "summit")
      for part in ("kind", "explainer")),
]


def test_kind_descriptions_import_without_torch():
    """TensorBoard's reader loads every kind's description: none may pull in torch (the layer
    contracts say the same statically; this checks it at run time, lazy package exports
    included)."""
    code = ("import sys; from deepvid_plugin.core import kinds; kinds.names(); "
            "import deepvid_plugin.api, deepvid_plugin.tensorboard.store; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
