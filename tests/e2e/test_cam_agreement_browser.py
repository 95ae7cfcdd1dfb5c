"""The cam_agreement kind in the browser: the instance grid shows the teacher's and the student's
maps side by side in each cell; the detail shows both maps per top class, the agreement numbers,
the agreement over epochs and the student's evidence. The records are real: a small student
distilled from a small teacher with CAMDistillLoss on the bundled digits, explained every epoch
by CAMAgreement; they are served by the self-contained viewer (in MLflow's sandboxed blob:
iframe) over a MemoryStore snapshot, and by
the TensorBoard plugin over a real logdir.

The screenshot of the detail is docs/img/cam_agreement.png (written when
``DEEPVID_DOCS_SCREENSHOTS=1``; always written to test-artifacts/).
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

# Before deepvid_plugin.methods.cam_agreement.loss: importing distill first is circular (distill -> explain ->
# cam_agreement -> distill) until distill stops importing through deepvid_plugin.explain.
import deepvid_plugin.explain  # noqa: F401
from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from deepvid_plugin.core.explainer import ExplainContext
from deepvid_plugin.methods.cam_agreement.explainer import CAMAgreement
from deepvid_plugin.methods.cam_agreement.loss import CAMDistillLoss
from tests.callbacks.helpers import tracked, train_slice
from tests.e2e.test_viewer_browser import _show_in_sandbox
from tests.methods.cam_agreement.test_explainer import N_CLASSES, Net

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

IDS = ("d0", "d1", "d2")
EPOCHS = 6
DOCS_IMG = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "img",
                        "cam_agreement.png")


def distilled_records() -> list:
    """CAMAgreement's records of a real (tiny) distillation, every epoch (epoch 0: untrained)."""
    torch.manual_seed(0)
    x = torch.as_tensor(train_slice()[0], dtype=torch.float32)
    teacher, student = Net(seed=0), Net(seed=11)
    xi, _ = tracked(len(IDS))
    ex = CAMAgreement(teacher, "features", "features", evidence_steps=8)
    ex.prepare(ExplainContext(x=torch.as_tensor(xi, dtype=torch.float32), ids=IDS,
                              class_names=tuple(f"class {c}" for c in range(N_CLASSES))))
    kd = CAMDistillLoss(teacher, student, "features", "features", top_k=3, cam_weight=20.0,
                        kd_weight=1.0)
    opt = torch.optim.Adam(student.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    out = []
    for epoch in range(EPOCHS):
        if epoch:
            for idx in torch.randperm(len(x), generator=g).split(32):
                _, loss = kd(x[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        out.extend(ex.explain(student, epoch))
    return out


@pytest.fixture(scope="module")
def html():
    store = MemoryStore({"distil": distilled_records()})
    return standalone_html(api.snapshot(store), title="cam_agreement test")


def _grid_and_detail(frame, page):
    """The grid's cells hold both maps; d1's detail at the last epoch shows everything."""
    cells = frame.locator("[data-testid=overview-cell][data-kind=cam_agreement]")
    cells.first.wait_for()
    assert cells.count() == len(IDS) * EPOCHS
    switch = frame.locator("[data-testid=kind-switch]")
    assert switch.locator("button").all_inner_texts() == ["Teacher vs student"]
    # each cell: the teacher's and the student's map side by side, and their Pearson r
    first = cells.first
    first.locator("[data-testid=cam-pair] canvas").nth(1).wait_for()
    assert first.locator("[data-testid=cam-pair] canvas").count() == 2
    a, b = (first.locator("[data-testid=cam-pair] canvas").nth(i).bounding_box() for i in (0, 1))
    assert a is not None and b is not None
    assert abs(a["y"] - b["y"]) < 2 and a["x"] + a["width"] <= b["x"] + 1
    assert first.locator("[data-testid=cam-pearson]").inner_text().startswith("r ")

    frame.locator(f"[data-testid=overview-cell][data-instance=d1][data-step='{EPOCHS - 1}']"
                  ).click()
    panel = frame.locator(f"[data-testid=detail-panel][data-loaded=true]"
                          f"[data-step='{EPOCHS - 1}']")
    panel.wait_for()
    assert panel.get_attribute("data-kinds") == "cam_agreement"
    col = panel.locator("[data-testid=detail-kind][data-kind=cam_agreement]")
    rows = col.locator("[data-testid=cam-class-row]")
    assert rows.count() == 3  # the teacher's top-3 classes
    for i in range(3):
        assert rows.nth(i).locator("[data-testid=cam-teacher] canvas").count() == 1
        assert rows.nth(i).locator("[data-testid=cam-student] canvas").count() == 1
        assert "Pearson" in rows.nth(i).locator("[data-testid=cam-class-agreement]").inner_text()
    assert "Pearson" in col.locator("[data-testid=agreement-numbers]").inner_text()
    col.locator("[data-testid=top1-agreement]").wait_for()
    col.locator("[data-testid=agreement-chart] canvas").first.wait_for()
    # the evidence of the student's map: the third section, folded until asked for
    evidence = col.locator("[data-testid=detail-section]:has([data-testid=evidence])")
    assert evidence.evaluate("d => d.open") is False
    evidence.locator("summary").click()
    col.locator("[data-testid=evidence-deletion]").wait_for()
    assert col.locator("[data-testid=evidence-insertion]").count() == 1
    assert not page.dv_errors, page.dv_errors
    return col


def test_grid_and_detail_show_teacher_and_student(page, html, artifacts_dir):
    col = _grid_and_detail(_show_in_sandbox(page, html), page)
    # tall enough for the grid and the whole detail column at once
    page.set_viewport_size({"width": 1440, "height": 1750})
    col.locator("[data-testid=agreement-chart] canvas").first.wait_for()
    shot = os.path.join(artifacts_dir, "cam_agreement.png")
    page.screenshot(path=shot)
    if os.environ.get("DEEPVID_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS_IMG)


def test_the_same_in_tensorboard(tensorboard_server, tmp_path, page, artifacts_dir):
    from deepvid_plugin.tensorboard.summary import TensorBoardSink
    from tests.e2e.fixtures_tensorboard import wait_for_json

    with TensorBoardSink(str(tmp_path / "distil")) as sink:
        for rec in distilled_records():
            sink.write(rec, rec.step)
    base_url = tensorboard_server(tmp_path, load_fast="false")
    wait_for_json(base_url + "/data/plugin/deepvid/kinds?run=distil",
                  lambda b: [(k["kind"], k["steps"]) for k in b["kinds"]]
                  == [("cam_agreement", EPOCHS)])
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(base_url + "/#deepvid")
    # The shell starts on a kind the run holds: nothing it asks for is missing (a run without
    # DeepVID data used to get a 404 for DeepVID's overview, logged in the console).
    frame = page.frame_locator("iframe[src*='plugin_entry.html?name=deepvid']")
    _grid_and_detail(frame, page)
    assert not missing, missing
    page.screenshot(path=os.path.join(artifacts_dir, "cam_agreement_tensorboard.png"))
