"""What the fault tests share: a callback that explains in milliseconds (so the faults, not the
explanations, take the time), production error handling, and a read-back of what reached MLflow."""

from __future__ import annotations

import os

from tests.callbacks.helpers import small_cnn, tracked

IDS = [str(i) for i in range(4)]


def quick_callback(**kwargs):
    """A DeepVID callback on 4 digits with pixel-jitter neighbours (no VAE to fit)."""
    from deepvid_plugin.callbacks import DeepVIDCallback
    from deepvid_plugin.explain import PixelGenerator

    xi, yi = tracked()
    return DeepVIDCallback(small_cnn(), xi, labels=yi, generator=PixelGenerator((1, 8, 8)),
                           n_neighbours=16, progress=False, **kwargs)


def check_mlflow_run(client, run_id, written: dict[int, list]) -> None:
    """Everything in ``written`` (step -> the records the callback returned) is in the MLflow
    run, exactly once: step summaries, records (byte for byte, through the real reader), one
    point of the run-level metric per step, and each instance's step card at its first and last
    step, never twice at one step (the sink draws cards where they matter: mlflow/selection.py)."""
    from deepvid_plugin.mlflow import layout
    from deepvid_plugin.mlflow.store import MLflowStore

    assert written and all(written.values()), written
    steps = sorted(written)
    store = MLflowStore(client)
    ov = store.overview(run_id, kind="deepvid")
    assert ov.warnings == []
    assert {i.id: [s["step"] for s in i.steps] for i in ov.instances} == \
        {i: steps for i in IDS}
    for step, records in written.items():
        for rec in records:
            assert store.record(run_id, rec.instance_id, step, kind="deepvid") == rec, step
    history = client.get_metric_history(run_id, layout.run_metric("deepvid", "fidelity_mean"))
    assert sorted(m.step for m in history) == steps  # no step missing, none twice
    images = [os.path.basename(f.path) for f in client.list_artifacts(run_id, "images")]
    for step in steps:
        for iid in IDS:
            mine = [n for n in images if n.startswith(f"deepvid~{iid}+step+{step}+")
                    and n.endswith(".png")]
            assert len(mine) == (1 if step in (steps[0], steps[-1]) else len(mine)) <= 1, \
                (iid, step, mine)
