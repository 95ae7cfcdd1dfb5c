"""The ``Example::`` blocks of the public classes run, as captum's and Lightning's do.

Each listed module must hold at least one example (a module whose examples were deleted fails
here rather than passing on zero examples), and every example must pass.
"""

import doctest
import importlib

import pytest

MODULES = [
    "deepvid_plugin.core.record",
    "deepvid_plugin.core.store",
    "deepvid_plugin.methods.deepvid.engine",
    "deepvid_plugin.methods.deepvid.explainer",
    "deepvid_plugin.methods.deepvid.generator",
    "deepvid_plugin.methods.deepvid.vae",
    "deepvid_plugin.methods.gradcam.engine",
    "deepvid_plugin.methods.gradcam.explainer",
    "deepvid_plugin.methods.cam_agreement.loss",
    "deepvid_plugin.methods.cam_agreement.explainer",
    "deepvid_plugin.methods.netdissect.concepts",
    "deepvid_plugin.methods.netdissect.engine",
    "deepvid_plugin.methods.netdissect.explainer",
    "deepvid_plugin.methods.summit.engine",
    "deepvid_plugin.methods.summit.explainer",
    "deepvid_plugin.methods.attribution.engine",
    "deepvid_plugin.methods.attribution.explainer",
    "deepvid_plugin.core.outputs",
    "deepvid_plugin.callbacks.plain",
    "deepvid_plugin.callbacks.lightning",
    "deepvid_plugin.callbacks.hf",
    "deepvid_plugin.tensorboard.summary",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.attempted > 0, f"{name}: no Example:: block to run"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
