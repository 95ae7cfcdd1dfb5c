"""Explanation-drift alerts end to end: a model that switches to a shortcut during training, a
real callback with Grad-CAM, the alert it raises (and `on_alert`), read back through the `alerts`
route of a real TensorBoard (both loaders) and of the MLflow app."""

from __future__ import annotations

import os
import urllib.parse

import numpy as np
import pytest
import torch
from torch import nn

from deepvid_plugin.callbacks import DeepVIDCallback
from deepvid_plugin.explain import GradCAM
from tests.e2e.fixtures_tensorboard import get_json, wait_for_json

N, SIZE, SWITCH = 8, 16, 3


class ShortcutNet(nn.Module):
    """Convolutions without bias over a masked input: while ``mask`` is all ones the maps follow
    each image's object; once it keeps only the top-left corner (what a model that learned a
    corner marker does), they sit there."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(self.conv.weight.shape, generator=g))
            self.head.weight.copy_(torch.tensor([[1.0] * 8, [-1.0] * 8]))
            self.head.bias.zero_()
        self.register_buffer("mask", torch.ones(SIZE, SIZE))

    def forward(self, x):
        a = torch.relu(self.conv(x * self.mask))
        return self.head(a.mean((2, 3)))


def _instances() -> torch.Tensor:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:SIZE, :SIZE]
    out = []
    for _ in range(N):
        cy, cx = rng.uniform(6, 11, size=2)
        img = 0.05 + 0.9 * ((y - cy) ** 2 + (x - cx) ** 2 < 6)
        img[:3, :3] = 0.7  # every image carries the corner marker
        out.append(img[None])
    return torch.tensor(np.stack(out), dtype=torch.float32)


def _train(sinks_kw: dict, on_alert) -> list:
    model = ShortcutNet()
    with DeepVIDCallback(model, _instances(), labels=[0] * N, explainers=[GradCAM("conv")],
                         on_alert=on_alert, progress=False, **sinks_kw) as cb:
        for epoch in range(6):
            if epoch == SWITCH:  # "training" found the shortcut
                model.mask.zero_()
                model.mask[:3, :3] = 1.0
            cb.on_epoch_end(epoch)
    return cb


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("alerts")
    seen = []
    _train({"logdir": str(root / "shortcut")}, seen.append)
    return root, seen


def test_the_shortcut_raises_a_hot_spot_alert_and_calls_on_alert(logdir):
    _, seen = logdir
    hot = [a for a in seen if a["detector"] == "hot_spot"]
    assert [a["step"] for a in hot] == [SWITCH]
    assert "top-left" in hot[0]["message"] and hot[0]["kind"] == "gradcam"
    assert hot[0]["evidence"]["view"] == "compare"


@pytest.mark.e2e
@pytest.mark.parametrize("load_fast", ["false", "true"])
def test_alerts_route_in_real_tensorboard(tensorboard_server, logdir, load_fast):
    root, seen = logdir
    base = tensorboard_server(root, load_fast=load_fast)
    url = base + "/data/plugin/deepvid/alerts?" + urllib.parse.urlencode({"run": "shortcut"})
    body = wait_for_json(url, lambda b: isinstance(b, dict) and b.get("alerts"))
    assert [(a["step"], a["detector"], a["message"]) for a in body["alerts"]] == [
        (a["step"], a["detector"], a["message"]) for a in seen]
    status, body = get_json(base + "/data/plugin/deepvid/alerts?run=nope")
    assert status == 404 and "not found" in body["error"]


@pytest.mark.e2e
def test_alerts_route_in_the_mlflow_app(mlflow_app_server):
    import mlflow

    client = mlflow.MlflowClient(mlflow_app_server.url)
    exp = client.create_experiment("alerts-e2e")
    run = client.create_run(exp, run_name="shortcut").info.run_id
    seen = []
    _train({"mlflow": run, "tracking_uri": mlflow_app_server.url}, seen.append)
    client.set_terminated(run)
    assert seen
    status, body = get_json(mlflow_app_server.url + "/deepvid/api/alerts?"
                            + urllib.parse.urlencode({"run": run}))
    assert status == 200
    assert [a["message"] for a in body["alerts"]] == [a["message"] for a in seen]
    # MLflow's own UI shows it too: a metric per step and the latest sentence as a run tag
    history = client.get_metric_history(run, "deepvid/alerts")
    assert [m.step for m in history] == sorted({a["step"] for a in seen})
    assert client.get_run(run).data.tags["deepvid.alerts"].startswith(f"step {seen[-1]['step']}")


FRAME = "iframe[src*='plugin_entry.html?name=deepvid']"


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_alert_banner_and_step_marks_in_the_deepvid_tab(tensorboard_server, logdir, page,
                                                        artifacts_dir):
    """What a user sees first in the DeepVID tab: the banner naming the alert, a mark on the
    step axis where it fired, and a click on the alert that selects that step."""
    root, seen = logdir
    base = tensorboard_server(root, load_fast="false")
    wait_for_json(base + "/data/plugin/deepvid/alerts?run=shortcut",
                  lambda b: isinstance(b, dict) and b.get("alerts"))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(base + "/#deepvid")
    frame = page.frame_locator(FRAME)
    banner = frame.locator("[data-testid=alert-banner]")
    banner.wait_for()
    text = banner.inner_text()
    assert f"from step {seen[0]['step']}" in text and "top-left" in text, text
    items = frame.locator("[data-testid=alert-item]")
    assert items.count() == len(seen)
    marks = frame.locator("[data-testid=alert-step]")
    assert sorted({int(marks.nth(i).get_attribute("data-step")) for i in range(marks.count())}) \
        == sorted({a["step"] for a in seen})
    assert "top-left" in (marks.first.get_attribute("title") or "")
    items.first.click()  # selects the alert's step (and the first instance it names)
    selected = frame.locator("[data-testid=overview-cell].selected")
    selected.first.wait_for()
    assert selected.first.get_attribute("data-step") == str(seen[0]["step"])
    page.screenshot(path=os.path.join(artifacts_dir, "alerts_banner.png"), full_page=True)
