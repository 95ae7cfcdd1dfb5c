"""Every route of a real ``tensorboard`` subprocess, under both loaders, with DEFAULT flags.

60 steps per instance: more than either loader keeps for an unknown plugin (10 under the
multiplexer, 100 blobs / 10 tensors under RustBoard unless told otherwise), so this fails unless
the ``tensorboard_plugins`` entry point loads and its ``fix_flags`` keeps every sample.
"""

import pytest

from tests.e2e.fixtures_tensorboard import get_json, wait_for_json
from tests.tensorboard.logdirs import write_logdir
from tests.tensorboard.routes import check_round_trip, q

STEPS = 60
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return write_logdir(tmp_path_factory.mktemp("logs60"), steps=STEPS)


@pytest.mark.parametrize("load_fast", ["false", "true"])
def test_real_tensorboard_serves_every_step(tensorboard_server, logdir, load_fast):
    base = tensorboard_server(logdir, load_fast=load_fast)
    # TensorBoard loads the logdir in the background: wait until all three runs are complete.
    wait_for_json(base + q("runs"), lambda b: len(b["runs"]) == 3 and all(
        r["steps"] == STEPS for r in b["runs"]), timeout=120)
    listing = get_json(base + "/data/plugins_listing")[1]
    assert listing["deepvid"]["enabled"] is True
    assert listing["deepvid"]["loading_mechanism"] == {
        "type": "IFRAME", "module_path": "/data/plugin/deepvid/index.js"}

    def get(path):
        return get_json(base + path)

    check_round_trip(get, STEPS)


@pytest.mark.parametrize("load_fast", ["false", "true"])
def test_users_samples_per_plugin_wins(tensorboard_server, logdir, load_fast):
    # fix_flags only fills in a default: a user's own --samples_per_plugin deepvid=N stands.
    base = tensorboard_server(logdir, load_fast=load_fast,
                              extra_args=["--samples_per_plugin", "deepvid=7"])
    body = wait_for_json(base + q("timeline", run="r1", instance="a"),
                         lambda b: len(b["steps"]) > 0, timeout=120)
    assert 0 < len(body["steps"]) <= 7
