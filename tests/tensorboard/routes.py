"""One round-trip check of every route, run against each way TensorBoard can load a logdir.

``get(path) -> (status, json_body)`` abstracts the transport: werkzeug's test client over the
plugin in-process, or HTTP against a real ``tensorboard`` subprocess.
"""

import urllib.parse

import numpy as np

from deepvid_plugin.api import decode_map
from tests.factories import make_record
from tests.tensorboard.logdirs import CLASS_NAMES, HOSTILE

P = "/data/plugin/deepvid/"


def q(route, **params):
    return P + route + ("?" + urllib.parse.urlencode(params) if params else "")


def check_round_trip(get, steps):
    status, body = get(q("runs"))
    assert status == 200, body
    runs = {r["run"]: r for r in body["runs"]}
    assert set(runs) == {"r1", "r2", "bad"}
    started = runs["r1"].pop("started")  # the run's first event: compare opens the oldest
    assert isinstance(started, float) and started > 1e9
    assert runs["r1"] == {"run": "r1", "name": "r1", "instances": 2, "steps": steps,
                          "kinds": ["deepvid"]}

    status, ov = get(q("instances", run="r1"))
    assert status == 200 and ov["warnings"] == [] and ov["class_names"] == CLASS_NAMES
    assert [i["id"] for i in ov["instances"]] == ["<script>b", "a"]
    a = ov["instances"][1]
    rec0 = make_record("a", 0, class_names=CLASS_NAMES)
    assert a["label"] == rec0.label and a["image"]["shape"] == [1, 28, 28]
    assert [s["step"] for s in a["steps"]] == list(range(steps))
    preds = [make_record("a", s).predicted for s in range(steps)]
    assert [s["predicted"] for s in a["steps"]] == preds
    assert [s["changed"] for s in a["steps"]] == [False] + [
        x != y for x, y in zip(preds, preds[1:], strict=False)]
    # the overview leaves the maps and probabilities to each row's timeline
    assert not {"thumb", "probs"} & set(a["steps"][0])

    status, tl = get(q("timeline", run="r1", instance=HOSTILE))
    assert status == 200 and tl["instance"] == HOSTILE
    assert [s["step"] for s in tl["steps"]] == list(range(steps))
    status, tl = get(q("timeline", run="r1", instance="a"))
    assert status == 200 and tl["steps"][0]["thumb"]["shape"] == [14, 14]
    assert len(tl["steps"][0]["probs"]) == 10

    last = steps - 1
    status, rec = get(q("record", run="r1", instance="a", step=last))
    expect = make_record("a", last, class_names=CLASS_NAMES)
    assert status == 200, rec
    assert rec["step"] == last and rec["predicted"] == expect.predicted
    assert len(rec["weights"]) == 10 and len(rec["neighbours"]) == 8
    assert rec["neighbour_teacher"] == expect.neighbour_teacher.tolist()
    np.testing.assert_allclose(decode_map(rec["weights"][4]), expect.weights[4].astype(float),
                               atol=rec["weights"][4]["scale"] / 127 + 1e-3)

    status, cmp_ = get(q("compare", instance="a", runs="r1,r2"))
    assert status == 200, cmp_
    assert cmp_["steps"] == list(range(steps)) and len(cmp_["maps"]) == steps
    assert cmp_["common_instances"] == ["a"] and cmp_["only_in"] == {"r1": [HOSTILE],
                                                                     "r2": ["c"]}
    assert "comparing the 1 they share" in cmp_["note"]

    check_bad_input(get)
    check_unreadable(get, steps)


def check_bad_input(get):
    for path, code, needle in [
        (q("instances"), 400, "'run'"),
        (q("instances", run="nope"), 404, "run 'nope' not found"),
        (q("timeline", run="r1"), 400, "'instance'"),
        (q("timeline", run="r1", instance="zz"), 404, "instance 'zz' not found"),
        (q("timeline", run="../../etc", instance="a"), 404, "not found"),
        (q("record", run="r1", instance="a"), 400, "'step'"),
        (q("record", run="r1", instance="a", step="1.5"), 400, "expected an integer"),
        (q("record", run="r1", instance="a", step="1e9"), 400, "expected an integer"),
        (q("record", run="r1", instance="a", step="99999"), 404, "no deepvid record"),
        (q("record", run="r1", instance="a'\"<x>", step="0"), 404, "no deepvid record"),
        (q("compare", instance="a", runs="r1"), 400, "two distinct comma-separated runs"),
        (q("compare", instance="a", runs="r1,nope"), 404, "run 'nope' not found"),
        (q("compare", instance="c", runs="r1,r2"), 404, "instance 'c' not found in run 'r1'"),
        (P + "..%2F..%2Fsetup.cfg", 404, "no such file"),
        (P + "nothing-here.js", 404, "no such file"),
    ]:
        status, body = get(path)
        assert status == code, (path, status, body)
        assert isinstance(body, dict) and needle in body["error"], (path, body)


def check_unreadable(get, steps):
    status, ov = get(q("instances", run="bad"))
    assert status == 200, ov
    a, ok = ov["instances"]
    assert [s["step"] for s in ok["steps"]] == list(range(steps))  # nothing else is lost
    assert [s["step"] for s in a["steps"]] == [s for s in range(steps) if s not in (1, 3)]
    text = " ".join(ov["warnings"])
    assert "step 1" in text and "schema_version 3" in text and "upgrade" in text
    assert "step 3" in text and "summary is unreadable" in text
    status, body = get(q("record", run="bad", instance="a", step=1))
    assert status == 404 and "schema_version 3" in body["error"]
    status, body = get(q("record", run="bad", instance="a", step=2))
    assert status == 404 and "corrupt" in body["error"]
    assert get(q("record", run="bad", instance="a", step=0))[0] == 200
    assert get(q("record", run="bad", instance="a", step=3))[0] == 200
    status, runs = get(q("runs"))
    assert any("schema_version 3" in w for w in runs["warnings"])
