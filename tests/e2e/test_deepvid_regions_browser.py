"""The DeepVID tab on natural-image records (a student over regions): a real ``tensorboard``
and headless Chromium. The detail panel draws each region's weight back onto the instance with
the regions outlined, says what a region weight means, and lists only the classes the record
kept. The screenshot lands in test-artifacts/deepvid_regions.png."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from deepvid_plugin.demo.photos import planted_photos
from deepvid_plugin.explain import DeepVID
from deepvid_plugin.tensorboard.summary import close_logdir, write_record
from tests.e2e.fixtures_tensorboard import wait_for_json
from tests.methods.deepvid.photo_models import photo_cnn

pytestmark = pytest.mark.timeout(600)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "deepvid_photos" / "cnns.pt"
FRAME = "iframe[src*='plugin_entry.html?name=deepvid']"
SIZE = 96
IDS = ["photo-0", "photo-1", "photo-2"]


@pytest.fixture(scope="module")
def region_logdir(tmp_path_factory):
    saved = torch.load(FIXTURE, weights_only=True)[str(SIZE)]
    model = photo_cnn(SIZE)
    model.load_state_dict(saved["state"])
    model.eval()
    task = planted_photos(12, SIZE, seed=3, split="test")
    x = (task.x - saved["mean"]) / saved["std"]
    records = DeepVID(None, store_classes=3).explain(
        model, x[: len(IDS)], ids=IDS, labels=task.y[: len(IDS)], class_names=task.class_names)
    root = tmp_path_factory.mktemp("tb-regions")
    for step in (0, 1):
        for r in records:
            write_record(root / "photos", r, step)
    close_logdir(root / "photos")
    return root, records


def test_region_maps_in_the_deepvid_tab(tensorboard_server, region_logdir, page, artifacts_dir):
    root, records = region_logdir
    base_url = tensorboard_server(root, load_fast="false")
    wait_for_json(base_url + "/data/plugin/deepvid/runs",
                  lambda b: [(r["run"], r["steps"]) for r in b["runs"]] == [("photos", 2)])
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.goto(base_url + "/#deepvid")
    frame = page.frame_locator(FRAME)
    frame.locator("[data-testid=overview-cell] canvas").first.wait_for()
    assert frame.locator("[data-testid=instance-row]").count() == len(IDS)
    frame.locator("[data-testid=instance-row][data-instance=photo-1] "
                  "[data-testid=overview-cell]").last.click()
    panel = frame.locator("[data-testid=detail-panel]")
    panel.wait_for()
    focus = panel.locator("[data-testid=focus-maps]")
    focus.wait_for()
    rec = records[1]
    assert focus.get_attribute("data-class") == str(rec.predicted)
    assert focus.locator("[data-testid=focus-weight] canvas").count() == 1
    assert focus.locator("[data-testid=focus-contribution]").count() == 0  # regions: one map
    legend = panel.locator("[data-testid=map-legend]").inner_text()
    assert f"read {int(rec.segments.max()) + 1} regions" in legend
    # only the kept classes, each clickable into the focus view (their section folds: open it)
    panel.locator("[data-testid=detail-section] > summary", has_text="per class").first.click()
    kept = panel.locator("[data-testid=class-map]")
    assert kept.count() == len(rec.classes) == 3
    assert sorted(int(c) for c in kept.evaluate_all("els => els.map(e => e.dataset.class)")) == \
        sorted(int(c) for c in rec.classes)
    assert "keeps 3 of 4 classes" in panel.inner_text()
    # the drawn map is not blank: its pixels vary (regions of different weight)
    pixels = focus.locator("[data-testid=focus-weight] canvas").evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
    assert np.unique(np.asarray(pixels).reshape(-1, 4)[:, :3], axis=0).shape[0] > 20
    panel.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    page.screenshot(path=os.path.join(artifacts_dir, "deepvid_regions.png"))
