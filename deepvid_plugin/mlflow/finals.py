"""What the MLflow sink writes about the run as a whole, built from its copy of the run
(:mod:`.written`): each kind's ``index.json`` and the self-contained ``viewer.html`` (every
``viewer_every`` steps and on close), and, on close, one bundle per subject (:mod:`.bundle`)."""

from __future__ import annotations

import json

from deepvid_plugin.core.encode import encode_image
from deepvid_plugin.mlflow import bundle, layout
from deepvid_plugin.mlflow.spool import Builder
from deepvid_plugin.mlflow.written import WrittenStore


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def add_index_and_viewer(builder: Builder, store: WrittenStore, title: str | None,
                         record_budget: int) -> None:
    """``<kind>/index.json`` of every kind and ``viewer.html`` (``title``: default the run's
    name), into ``builder``'s upload."""
    from deepvid_plugin.api import viewer
    from deepvid_plugin.mlflow import pages

    for name, data in store.by_kind.items():
        builder.write_bytes(f"{name}/index.json", _json({
            "layout": layout.LAYOUT_VERSION, "kind": name, "class_names": list(data.class_names),
            "steps": sorted({s for steps in data.summaries.values() for s in steps}),
            "instances": [{"id": iid, "key": data.keys[iid], "label": data.labels[iid],
                           "image": None if data.images[iid] is None
                           else encode_image(data.images[iid]),
                           "summaries": [s for _, s in sorted(steps.items())],
                           "record_crc32": [data.crcs[(iid, step)] for step in sorted(steps)]}
                          for iid, steps in data.summaries.items()]}))
    if store.by_kind:  # the frontend has a view for every kind
        snap = pages.budgeted_snapshot(store, [store.run], record_budget=record_budget)
        html = viewer.standalone_html(snap, title=title or f"DeepVID: {store.name}")
        builder.write_bytes("viewer.html", html.encode("utf-8"))


def add_bundles(builder: Builder, store: WrittenStore) -> None:
    """Every subject's bundle: all of its records and its per-subject arrays in one file."""
    for name, data in store.by_kind.items():
        for iid, steps in data.summaries.items():
            key = data.keys[iid]
            blob = bundle.encode_bundle(
                iid, key, [(step, store.blob(name, iid, step)) for step in sorted(steps)],
                subject=store.subject_bytes(name, iid), kind=name)
            builder.write_bytes(f"{name}/bundles/{layout.bundle_file(key)}", blob)


__all__ = ["add_bundles", "add_index_and_viewer"]
