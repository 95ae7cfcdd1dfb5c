"""MLflowSink against a real server, read back with plain MlflowClient calls (no deepvid reader),
so these tests check what any MLflow user or tool sees."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from deepvid_plugin.core import card
from deepvid_plugin.core.record import decode_arrays
from deepvid_plugin.methods.deepvid.record import ExplanationRecord
from deepvid_plugin.methods.deepvid.render import render_weight_map
from deepvid_plugin.mlflow import layout
from deepvid_plugin.mlflow.sink import MLflowSink
from tests.factories import make_record, step_part
from tests.mlflow.runs import EVIL, STEPS, fluent_tracking, record


def _download(client, run_id, path, tmp_path) -> bytes:
    local = client.download_artifacts(run_id, path, str(tmp_path))
    with open(local, "rb") as f:
        return f.read()


def image_steps(iid: str, seed: int, every: bool) -> list[int]:
    """The steps with a step image: all, or the first, those where the prediction changed and
    the last (the default)."""
    if every:
        return list(STEPS)
    preds = [record(iid, s, seed).predicted for s in STEPS]
    return [s for i, s in enumerate(STEPS)
            if i in (0, len(STEPS) - 1) or preds[i] != preds[i - 1]]


def check_run(client, run_id, ids, seed, tmp_path, everything: bool):
    """Everything the sink promises, for one run, through MlflowClient only. ``everything``:
    the run was logged with per-instance metrics and images at every step (opt-in)."""
    from deepvid_plugin.mlflow import links

    run = client.get_run(run_id)
    assert run.data.tags[layout.LAYOUT_TAG] == str(layout.LAYOUT_VERSION)
    # MLflow's run page links to the run in the DeepVID app (tag, and description)
    link = links.app_link(run.info.experiment_id, run_id)
    assert run.data.tags[links.APP_TAG] == link
    assert f"]({link})" in run.data.tags[links.NOTE_TAG]
    top = {os.path.basename(f.path) for f in client.list_artifacts(run_id, layout.ROOT)}
    assert top == {"deepvid", "viewer.html"}  # deepvid/<kind>/... and the one viewer
    here = {os.path.basename(f.path) for f in client.list_artifacts(run_id, "deepvid/deepvid")}
    assert {"records", "subjects", "steps", "index.json"} <= here
    assert {os.path.basename(f.path) for f in client.list_artifacts(run_id, layout.STEPS_DIR)} \
        == {f"{s}.json" for s in STEPS}
    images = [os.path.basename(f.path) for f in client.list_artifacts(run_id, "images")]
    assert images, "no step images were logged"
    ours = sorted(k for k in run.data.metrics if k.startswith(layout.ROOT + "/"))
    if not everything:  # run-level summaries only (these records carry no evidence)
        assert ours == [layout.MEAN_FIDELITY_METRIC, "deepvid/trusted_share"]
    else:
        assert len(ours) == 2 + len(ids)
    for iid in ids:
        key = layout.instance_key(iid)
        # records: one per step, without neighbour images, byte-exact to what was written
        files = sorted(os.path.basename(f.path) for f in
                       client.list_artifacts(run_id, f"{layout.RECORDS_DIR}/{key}"))
        assert files == sorted(f"{s}.dvid" for s in STEPS)
        for s in STEPS:
            got = ExplanationRecord.decode(_download(
                client, run_id, f"{layout.RECORDS_DIR}/{key}/{s}.dvid", tmp_path))
            assert step_part(got) == step_part(record(iid, s, seed))
        # neighbour images: once per instance, framed arrays (no pickle)
        arrays = decode_arrays(_download(
            client, run_id, f"{layout.SUBJECTS_DIR}/{key}.dvia", tmp_path))
        assert list(arrays) == ["image", "neighbours"]  # kind version 2: both once
        np.testing.assert_array_equal(arrays["neighbours"], record(iid, 0, seed).neighbours)
        # metric history (opt-in): one point per step, the fidelity we wrote
        hist = sorted(client.get_metric_history(run_id, layout.fidelity_metric(key)),
                      key=lambda m: m.step)
        assert [m.step for m in hist] == (list(STEPS) if everything else [])
        np.testing.assert_allclose([m.value for m in hist], [
            record(iid, s, seed).fidelity["top1_agreement"] for s in STEPS] if everything else [])
        # MLflow's step images: key deepvid/<key> (PNG + compressed WebP), at every step or at
        # the first, the changed and the last
        for s in STEPS:
            mine = [n for n in images if n.startswith(f"deepvid~{key}+step+{s}+")]
            want = 2 if s in image_steps(iid, seed, everything) else 0
            assert len(mine) == want and (not want or any(n.endswith(".png") for n in mine)), \
                (iid, s, mine)
    mean = sorted(client.get_metric_history(run_id, layout.MEAN_FIDELITY_METRIC),
                  key=lambda m: m.step)
    assert [m.step for m in mean] == list(STEPS)
    np.testing.assert_allclose(
        mean[-1].value, np.mean([record(i, STEPS[-1], seed).fidelity["top1_agreement"]
                                 for i in ids]))
    trusted = client.get_metric_history(run_id, "deepvid/trusted_share")
    np.testing.assert_allclose(
        max(trusted, key=lambda m: m.step).value,
        np.mean([record(i, STEPS[-1], seed).trustworthy for i in ids]))
    html = _download(client, run_id, layout.VIEWER_PATH, tmp_path).decode("utf-8")
    check_self_contained(html)


def check_self_contained(html: str):
    assert "__DEEPVID_SNAPSHOT__" in html and "data-deepvid-mount" in html
    # MLflow shows it from a blob: URL in a sandboxed iframe: nothing may be fetched
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|/)""", html, re.I)
    assert "<script src" not in html and "<link" not in html
    assert EVIL not in html  # the hostile instance id only appears escaped


def test_fluent_run(two_runs, tmp_path):
    from mlflow import MlflowClient

    check_run(MlflowClient(two_runs.url), two_runs.a, two_runs.ids[two_runs.a], 1, tmp_path,
              everything=False)


def test_explicit_run_id_and_client(two_runs, tmp_path):
    from mlflow import MlflowClient

    check_run(MlflowClient(two_runs.url), two_runs.b, two_runs.ids[two_runs.b], 2, tmp_path,
              everything=True)


def test_lightning_mlflow_logger(mlflow_server, tmp_path):
    from lightning.pytorch.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name="deepvid-lightning", tracking_uri=mlflow_server.url,
                          run_name="lightning")
    sink = MLflowSink(logger=logger, viewer_every=0)
    for step in STEPS:
        sink.write(record("a", step, 3), step)
    sink.close()
    assert sink.run_id == logger.run_id
    client = mlflow_server.client()
    assert client.get_run(logger.run_id).info.run_name == "lightning"
    hist = client.get_metric_history(logger.run_id, layout.MEAN_FIDELITY_METRIC)
    assert sorted(m.step for m in hist) == list(STEPS)
    got = ExplanationRecord.decode(_download(client, logger.run_id,
                                             f"{layout.RECORDS_DIR}/a/3.dvid", tmp_path))
    assert step_part(got) == step_part(record("a", 3, 3))


def test_viewer_is_refreshed_every_n_steps(mlflow_tracking, tmp_path):
    import mlflow

    client = mlflow_tracking.client()
    with mlflow.start_run() as run:
        sink = MLflowSink(viewer_every=2, log_images=False)
        run_id = run.info.run_id
        sink.write(record("a", 0, 0), 0)
        sink.flush()
        names = {os.path.basename(f.path) for f in client.list_artifacts(run_id, layout.ROOT)}
        assert "viewer.html" not in names  # 1 step uploaded: not due yet
        sink.write(record("a", 1, 0), 1)
        sink.flush()
        first = _download(client, run_id, layout.VIEWER_PATH, tmp_path / "1")
        for step in (2, 3):
            sink.write(record("a", step, 0), step)
        sink.close()
        last = _download(client, run_id, layout.VIEWER_PATH, tmp_path / "2")
    snap = lambda html: json.loads(  # noqa: E731
        re.search(rb"__DEEPVID_SNAPSHOT__=(.*?);</script>", html, re.S).group(1))
    steps = lambda html: [s["step"] for s in  # noqa: E731
                          snap(html)[f"instances?kind=deepvid&run={run_id}"]["instances"][0]["steps"]]
    assert steps(first) == [0, 1]
    assert steps(last) == [0, 1, 2, 3]


def test_no_active_run_is_a_clear_error(mlflow_tracking):
    sink = MLflowSink()
    with pytest.raises(RuntimeError, match="mlflow.start_run"):
        sink.write(make_record(), 0)


def test_unknown_run_id_is_named(mlflow_server):
    from mlflow.exceptions import MlflowException

    sink = MLflowSink("0123456789abcdef0123456789abcdef", client=mlflow_server.client())
    with pytest.raises(MlflowException, match="0123456789abcdef0123456789abcdef"):
        sink.write(make_record(), 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="viewer_every"):
        MLflowSink("r", viewer_every=-1)
    with pytest.raises(TypeError, match="run_id"):
        MLflowSink(run_id=3)
    with pytest.raises(TypeError, match="logger"):
        MLflowSink(logger=object())
    with pytest.raises(ValueError, match="viewer_record_budget"):
        MLflowSink("r", viewer_record_budget=-5)


def test_same_instance_twice_in_one_step_is_refused(mlflow_tracking):
    import mlflow

    with mlflow.start_run():
        sink = MLflowSink(viewer_every=0, log_images=False)
        sink.write(make_record("a", 0), 0)
        with pytest.raises(ValueError, match="already written"):
            sink.write(make_record("a", 0), 0)
        sink.close()


def test_instance_keys_are_safe_and_distinct():
    ids = ["a", "test-17", "x.y", EVIL, "a/b", "a b", "..", "é", "a" * 200, "a_b"]
    keys = [layout.instance_key(i) for i in ids]
    assert len(set(keys)) == len(keys)
    for k in keys:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", k) and ".." not in k and len(k) <= 64
    assert keys[:3] == ["a", "test-17", "x.y"]  # safe ids are kept as they are


RED, BLUE = (178, 24, 43), (33, 102, 172)


def _blocks(img: np.ndarray, colour, size: int) -> int:
    """How many ``size`` x ``size`` blocks of exactly ``colour`` the image holds (any offset)."""
    hit = np.all(img == np.array(colour, np.uint8), axis=-1).astype(np.int32)
    c = np.pad(hit.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return int((sums == size * size).sum())


def test_weight_map_image_overlays_the_instance_with_colour_bars():
    import dataclasses

    rec = make_record("a", 0)
    k = rec.predicted
    weights = np.zeros_like(rec.weights, dtype=np.float32)
    weights[k, 0, 5, 5] = 1.0  # left half: the input is 0 there, so it contributes nothing
    weights[k, 0, 20, 20] = -0.5  # right half: the input is 1, the only contribution
    image = np.zeros_like(rec.image)
    image[:, :, 14:] = 1.0
    rec = dataclasses.replace(rec, weights=weights, image=image)
    img = render_weight_map(rec)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    # 2:1, so MLflow's 256-px thumbnail fits its square box whole; text column, then two maps
    assert img.shape == (card.HEIGHT, card.WIDTH, 3) == (256, 512, 3)
    maps = img[:, card.TEXT_W:]
    # weight panel: the strongest weight saturates red over one map pixel (drawn as a square)
    assert _blocks(maps, RED, 4) >= 1
    # contribution panel (weight x input): the -0.5 weight on an input of 1 is the strongest
    # contribution, so it saturates blue; the +1 weight on an input of 0 adds nothing
    assert _blocks(maps, BLUE, 4) >= 1
    # Overlay, not the bare colour map: where the weight is 0 the instance shows through in grey
    # (dark on its left half); a bare map would be white (247) there.
    grey = img[..., 0].astype(int)
    dark = (img[..., 0] == img[..., 1]) & (img[..., 1] == img[..., 2]) & (grey < 100)
    assert dark.sum() > 2 * 100 * 16  # >100 dark 4x4 instance pixels in each panel
    # colour bars: a row running from blue through white to red, with many shades in between
    def near(row, colour):
        return bool((np.abs(row.astype(int) - colour).max(axis=-1) <= 6).any())

    rows = [r for r in range(img.shape[0])
            if near(img[r], BLUE) and near(img[r], RED) and len({tuple(p) for p in img[r]}) > 100]
    assert rows, "no colour bar found"


def test_weight_map_image_says_why_not_to_trust_it():
    plain = render_weight_map(make_record("a", 0, trustworthy=True))
    bad = render_weight_map(make_record("a", 0, evidence=True, better_than_random=False))
    assert plain.shape == bad.shape
    # the text column differs: LOW TRUST and why are written in orange
    text = slice(0, card.TEXT_W)
    orange = np.all(np.abs(bad[:, text].astype(int) - card.WARN) < 40, axis=-1)
    assert orange.sum() > 200
    assert not np.all(np.abs(plain[:, text].astype(int) - card.WARN) < 40, axis=-1).any()


def test_faithfulness_metrics_per_instance(mlflow_tracking):
    import mlflow

    from deepvid_plugin.mlflow.sink import deletion_auc_metric, insertion_auc_metric

    client = mlflow_tracking.client()
    new = {s: make_record("new", s, evidence=True) for s in STEPS}
    with mlflow.start_run() as run:
        sink = MLflowSink(viewer_every=0, log_images=False, subject_metrics=True)
        for s in STEPS:
            sink.write(new[s], s)
            sink.write(make_record("old", s), s)  # a record of an older version: no evidence
        sink.close()
    for metric, key in ((deletion_auc_metric, "deletion_auc"),
                        (insertion_auc_metric, "insertion_auc")):
        hist = sorted(client.get_metric_history(run.info.run_id, metric("new")),
                      key=lambda m: m.step)
        assert metric("new") == f"deepvid/{key}/new"
        assert [m.step for m in hist] == list(STEPS)
        np.testing.assert_allclose([m.value for m in hist], [new[s].fidelity[key] for s in STEPS])
        assert client.get_metric_history(run.info.run_id, metric("old")) == []
    # fidelity still goes to its own metric in the same batch
    assert len(client.get_metric_history(run.info.run_id, layout.fidelity_metric("old"))) == \
        len(STEPS)
    # the run-level mean deletion AUC averages the records that have one
    mean = max(client.get_metric_history(run.info.run_id, "deepvid/deletion_auc_mean"),
               key=lambda m: m.step)
    np.testing.assert_allclose(mean.value, new[STEPS[-1]].fidelity["deletion_auc"])


def test_lightning_nonzero_rank_writes_nothing():
    class DummyLogger:  # what Lightning's rank_zero_experiment hands out on other ranks
        experiment = None
        run_id = None

    sink = MLflowSink(logger=DummyLogger())
    sink.write(make_record(), 0)
    sink.close()
    assert sink.run_id is None


def test_fluent_helper_restores_tracking_uri(mlflow_server):
    import mlflow

    before = mlflow.get_tracking_uri()
    with fluent_tracking(mlflow_server.url):
        assert mlflow.get_tracking_uri() == mlflow_server.url
    assert mlflow.get_tracking_uri() == before
