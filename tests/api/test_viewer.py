"""deepvid_plugin.api.viewer: the built frontend wrapped as a self-contained or a served page."""

import json
import re
from html.parser import HTMLParser

import pytest

from deepvid_plugin import api
from deepvid_plugin.api import MemoryStore, viewer
from tests.factories import make_gradcam_record, make_run

HOSTILE = "</script><script>window.__pwned=1</script><!--"


class _Tags(HTMLParser):
    """Start tags with their attributes, and the text of every <script> (raw, as the parser sees it)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    p.close()
    return p


@pytest.fixture(scope="module")
def snapshot():
    store = MemoryStore({HOSTILE: make_run(("a", HOSTILE), range(2), n_classes=3,
                                           class_names=["x", "y", HOSTILE])})
    return api.snapshot(store)


def test_bundle_reads_the_built_files():
    js, css = viewer.bundle()
    assert js.startswith("var DeepVID=") and "mount" in js
    assert ".dv-root" in css
    # Pasted inline, the bundle must not contain what would end or confuse a <script> element
    # (viewer escapes "</script" anyway; this keeps that escape a no-op today).
    assert not re.search(r"</script|<!--|<script", js, re.IGNORECASE)


def test_standalone_html_is_self_contained_and_escaped(snapshot):
    page = viewer.standalone_html(snapshot, title=HOSTILE)
    parsed = _parse(page)
    # Exactly our two scripts (snapshot, bundle): no name closed a script early or opened one.
    assert [t for t, _ in parsed.tags].count("script") == 2
    assert page.count("</script>") == 2
    # Nothing is fetched: no src/href anywhere (MLflow's blob: iframe cannot resolve them).
    assert not [(t, a) for t, a in parsed.tags if {"src", "href"} & set(a)]
    assert "<link" not in page
    # The data script is plain JSON behind the assignment, and round-trips exactly.
    data = parsed.scripts[0]
    assert data.startswith("window.__DEEPVID_SNAPSHOT__=") and data.endswith(";")
    assert "<" not in data and ">" not in data
    assert json.loads(data[len("window.__DEEPVID_SNAPSHOT__="):-1]) == json.loads(json.dumps(snapshot))
    # The title is escaped in <title> and passed to the app as an attribute value.
    mount = [a for t, a in parsed.tags if "data-deepvid-mount" in a]
    assert len(mount) == 1 and mount[0]["data-title"] == HOSTILE and mount[0]["data-view"] == "overview"
    assert re.search(r"<title>&lt;/script&gt;", page)


def test_standalone_html_rejects_bad_arguments(snapshot):
    with pytest.raises(TypeError, match="snapshot: expected a mapping"):
        viewer.standalone_html([1, 2])
    with pytest.raises(ValueError, match="snapshot: expected a 'runs' response"):
        viewer.standalone_html({"instances?run=a": {}})
    with pytest.raises(TypeError, match="title: expected a str"):
        viewer.standalone_html(snapshot, title=3)
    with pytest.raises(ValueError, match=r"view: expected one of \['overview', 'compare'\], got 'x'"):
        viewer.standalone_html(snapshot, view="x")


def test_served_html_links_static_files_and_api():
    page = viewer.served_html("/deepvid/api/", "/deepvid/static/", title='a"b', view="compare")
    parsed = _parse(page)
    assert ("link", {"rel": "stylesheet", "href": "/deepvid/static/deepvid.css"}) in parsed.tags
    assert ("script", {"src": "/deepvid/static/deepvid.js"}) in parsed.tags
    mount = [a for t, a in parsed.tags if "data-deepvid-mount" in a][0]
    assert mount["data-api-base"] == "/deepvid/api/" and mount["data-title"] == 'a"b'
    assert mount["data-view"] == "compare"
    assert parsed.scripts == [""]  # no inline code
    with pytest.raises(ValueError, match="api_base: expected a URL ending with '/'"):
        viewer.served_html("/deepvid/api", "/s/")
    with pytest.raises(TypeError, match="static_base: expected a str"):
        viewer.served_html("/a/", None)


def test_standalone_html_carries_every_kind():
    store = MemoryStore({"r": make_run(("a",), range(2))
                         + [make_gradcam_record("a", s) for s in range(2)]})
    page = viewer.standalone_html(api.snapshot(store))
    data = _parse(page).scripts[0]
    snap = json.loads(data[len("window.__DEEPVID_SNAPSHOT__="):-1])
    assert [k["kind"] for k in snap["kinds?run=r"]["kinds"]] == ["deepvid", "gradcam"]
    assert snap["instances?kind=gradcam&run=r"]["kind"] == "gradcam"
    assert snap["record?instance=a&kind=gradcam&run=r&step=1"]["arrays"]["cam_pred"]["shape"] == [
        28, 28]
    # the bundle knows the kinds' views (views/<kind>.ts registered in the build)
    js, _ = viewer.bundle()
    # (a view may name its kind through a constant, so look for the quoted name, any quote the
    # minifier picks)
    for k in ("deepvid", "gradcam", "cam_agreement", "netdissect", "summit"):
        assert re.search(rf"[`'\"]{k}[`'\"]", js), k
