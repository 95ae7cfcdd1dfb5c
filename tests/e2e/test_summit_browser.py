"""The Summit page in the browser, over a viewer snapshot of real records: a small digits CNN
trained for a few epochs with SummitExplainer at every epoch (and Network Dissection records of
one of its layers, so node details show a concept label). The overview colours classes x epochs
by stability; the epoch slider redraws the layered graph; a node shows its top probe images and
its dissection label; the strip shows the class's activation counts. Saves docs/img/summit.png when ``DEEPVID_DOCS_SCREENSHOTS=1`` (always a copy in
test-artifacts/).
"""

from __future__ import annotations

import os

import pytest
import torch

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore
from deepvid_plugin.api.viewer import standalone_html
from deepvid_plugin.demo.digits import DigitsCNN, load_digits, train_epoch
from deepvid_plugin.methods.summit import Summit, SummitExplainer
from tests.e2e.test_viewer_browser import _show_in_sandbox
from tests.factories import make_netdissect_record

#: the fill of a node whose unit detects nothing (frontend/src/views/summit_graph.ts)
PLAIN_FILL = "#e2e8f0"

pytestmark = pytest.mark.timeout(180)

EPOCHS = 5
WIDTH = 12
DOCS_IMG = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "img", "summit.png")


@pytest.fixture(scope="module")
def records():
    d = load_digits()
    torch.manual_seed(0)
    model = DigitsCNN(width=WIDTH)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    summit = Summit(d.x_test, d.y_test, layers=["features.0", "features.3"], per_class=10,
                    class_names=d.class_names, nodes_per_layer=5)
    explainer = SummitExplainer(summit, every_n_epochs=1)
    out = []
    for epoch in range(EPOCHS):
        out += explainer.explain(model, epoch)
        train_epoch(model, opt, d.x_train[:300], d.y_train[:300],
                    generator=torch.Generator().manual_seed(epoch))
    dissect = [make_netdissect_record("features.3", s, units=2 * WIDTH) for s in range(EPOCHS)]
    return out, dissect


@pytest.fixture(scope="module")
def html(records):
    summit, dissect = records
    store = MemoryStore({"digits": summit + dissect})
    return standalone_html(api.snapshot(store), title="Summit test")


def _graph(frame):
    g = frame.locator("[data-testid=summit-graph]")
    g.wait_for()
    return g


def test_summit_page_slider_node_detail_and_strip(page, html, records, artifacts_dir):
    summit_records, dissect = records
    frame = _show_in_sandbox(page, html)
    frame.locator("[data-testid=tab-summit]").click()
    view = frame.locator("[data-testid=page-view][data-kind=summit]")
    view.wait_for()
    assert view.get_attribute("data-has-data") == "true"

    # overview: every class x epoch, coloured by stability; none at the first epoch
    cells = frame.locator("[data-testid=summit-cell]")
    assert cells.count() == 10 * EPOCHS
    first = frame.locator("[data-testid=summit-cell][data-step='0']")
    assert first.count() == 10
    assert set(first.evaluate_all("els => els.map(e => e.dataset.stability)")) == {""}
    later = frame.locator("[data-testid=summit-cell][data-step='3']")
    want = {r.subject: r.meta["stability"] for r in summit_records if r.step == 3}
    got = dict(later.evaluate_all(
        "els => els.map(e => [e.dataset.class, parseFloat(e.dataset.stability)])"))
    assert got.keys() == want.keys() and got == pytest.approx(want, abs=1e-3)
    colours = set(later.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)"))
    assert len(colours) > 1  # the colour follows the stability

    # the graph of the first class at the last epoch, then the slider moves it back in time
    graph = _graph(frame)
    assert (graph.get_attribute("data-class"), graph.get_attribute("data-step")) == (
        "0", str(EPOCHS - 1))
    rec = next(r for r in summit_records if r.subject == "0" and r.step == EPOCHS - 1)
    nodes = frame.locator("[data-testid=summit-graph] [data-testid=summit-node]")
    assert nodes.count() == len(rec.arrays["node_layer"])
    assert frame.locator("[data-testid=summit-graph] [data-testid=summit-edge]").count() == len(
        rec.arrays["edge_source"])
    before = nodes.evaluate_all("els => els.map(e => e.dataset.node)")
    slider = frame.locator("[data-testid=summit-epoch]")
    slider.focus()
    slider.press("Home")
    frame.locator("[data-testid=summit-graph][data-step='0']").wait_for()
    assert frame.locator("[data-testid=summit-epoch-label]").inner_text() == "step 0"
    rec0 = next(r for r in summit_records if r.subject == "0" and r.step == 0)
    after = nodes.evaluate_all("els => els.map(e => e.dataset.node)")
    assert len(after) == len(rec0.arrays["node_layer"])
    assert after != before  # the model changed between epoch 0 and the last one
    slider.press("ArrowRight")
    frame.locator("[data-testid=summit-graph][data-step='1']").wait_for()
    assert frame.locator(
        "[data-testid=summit-cell][data-class='0'][data-step='1'][aria-selected=true]").count() == 1

    # a cell selects its class and epoch
    frame.locator("[data-testid=summit-cell][data-class='3'][data-step='2']").click()
    frame.locator("[data-testid=summit-graph][data-class='3'][data-step='2']").wait_for()

    # at a glance: every node of the dissected layer whose unit is a detector at that step is
    # named by its concept and filled with its colour (a colour concept's own colour); the other
    # nodes are light grey
    rec32 = next(r for r in summit_records if r.subject == "3" and r.step == 2)
    d2 = next(r for r in dissect if r.step == 2)
    cats = d2.meta["label_category"]
    want = {}
    for layer, channel in zip(rec32.arrays["node_layer"], rec32.arrays["node_channel"], strict=True):
        u = int(channel)
        if int(layer) == 1 and d2.arrays["detector"][u]:
            li = int(d2.arrays["label"][u])
            want[f"features.3:{u}"] = (d2.meta["labels"][li], cats[li])
    assert want, "the premise: some features.3 node of class 3 is a detector at epoch 2"
    named = frame.locator("[data-testid=summit-graph] [data-testid=summit-node][data-concept]")
    got = dict(named.evaluate_all(
        "els => els.map(e => [e.dataset.node, [e.dataset.concept, e.dataset.category]])"))
    assert got == {k: list(v) for k, v in want.items()}
    for node_id, (concept, _) in want.items():
        node = frame.locator(f"[data-testid=summit-graph] [data-node='{node_id}']")
        assert node.locator("[data-testid=summit-node-concept]").text_content() == concept
        assert node.get_attribute("data-fill") != PLAIN_FILL
    plain = frame.locator("[data-testid=summit-graph] [data-testid=summit-node]:not([data-concept])")
    fills = set(plain.evaluate_all("els => els.map(e => e.dataset.fill)"))
    assert fills <= {PLAIN_FILL}
    legend = frame.locator("[data-testid=summit-concept-legend]")
    assert "step 2" in legend.inner_text()
    assert sorted(legend.locator("[data-category]").evaluate_all(
        "els => els.map(e => e.dataset.category)")) == sorted({c for _, c in want.values()})

    # node detail: examples and the dissection label of that unit at that epoch
    layer3 = [i for i, li in enumerate(rec32.arrays["node_layer"]) if li == 1]
    assert layer3
    busiest = max(layer3, key=lambda i: int(rec32.arrays["node_activation"][i]))
    node_id = f"features.3:{int(rec32.arrays['node_channel'][busiest])}"
    frame.locator(f"[data-testid=summit-graph] [data-node='{node_id}']").click()
    detail = frame.locator("[data-testid=summit-node-detail]")
    detail.locator("[data-testid=summit-examples] canvas").first.wait_for()
    assert node_id in detail.inner_text()
    label = detail.locator("[data-testid=summit-dissection-label]")
    label.wait_for()
    unit = int(node_id.split(":")[1])
    concept = d2.meta["labels"][int(d2.arrays["label"][unit])]
    assert concept in label.inner_text() and "step 2" in label.inner_text()

    # the strip: the class's activation counts, channel x epoch, of the chosen layer
    strip = frame.locator("[data-testid=summit-strip-cell]")
    strip.first.wait_for()
    assert strip.count() == 2 * WIDTH * EPOCHS
    frame.locator("[data-testid=summit-strip][data-layer='features.3']").wait_for()
    frame.locator("[data-testid=summit-strip-layer]").select_option("0")
    frame.locator("[data-testid=summit-strip][data-layer='features.0']").wait_for()
    assert frame.locator("[data-testid=summit-strip-cell]").count() == WIDTH * EPOCHS
    assert not page.dv_errors, page.dv_errors
    # The documentation's picture: class 3 at epoch 2 with a node open (the iframe is 100vh tall,
    # so a taller viewport shows the whole page).
    frame.locator("[data-testid=summit-strip-layer]").select_option("1")
    frame.locator("[data-testid=summit-strip][data-layer='features.3']").wait_for()
    page.set_viewport_size({"width": 1440, "height": 1120})
    frame.locator("[data-testid=summit-dissection-label]").wait_for()
    # Tests must not rewrite tracked files: the docs picture is refreshed only on request (as
    # the other kinds' browser tests do), a copy always goes to test-artifacts/.
    page.screenshot(path=os.path.join(artifacts_dir, "summit.png"))
    if os.environ.get("DEEPVID_DOCS_SCREENSHOTS") == "1":
        page.screenshot(path=DOCS_IMG)
