"""The JSON API of ``http_api.md`` (beside this package, in ``deepvid_plugin/``), computed once
for every backend.

Backends (the TensorBoard plugin, the MLflow app, the self-contained viewer) implement only the
small :class:`RecordStore` protocol and serve the route table :data:`ROUTES`; every response
shape is built here, so the frontend cannot tell them apart. The parts:

- :mod:`.encoders`: maps, images and step summaries as JSON;
- :mod:`.store`: the :class:`RecordStore` protocol and :class:`MemoryStore`;
- :mod:`.routes`: request parsing, the ``*_impl`` work, :data:`ROUTES` and :func:`respond`;
- :mod:`.snapshot`: every response at once, for the self-contained viewer.

Nothing here imports TensorBoard, MLflow or torch.
"""

from __future__ import annotations

from deepvid_plugin.api.encoders import (
    EVIDENCE_KEYS,
    THUMB_SIZE,
    channel_mean,
    decode_map,
    encode_image,
    encode_map,
    has_evidence,
    json_loads_object,
    step_summary,
    summary_fidelity,
    with_changed,
)
from deepvid_plugin.api.encoders import (
    _block_mean as _block_mean,  # the kind modules' thumbnails and rounding
)
from deepvid_plugin.api.encoders import (
    _round as _round,
)
from deepvid_plugin.api.routes import (
    DEFAULT_KIND,
    ROUTES,
    ApiError,
    Catalog,
    Route,
    compare_impl,
    instances_impl,
    kind_params,
    kinds_impl,
    parse_instance,
    parse_kind,
    parse_run,
    parse_runs,
    parse_step,
    record_impl,
    respond,
    runs_impl,
    timeline_impl,
)
from deepvid_plugin.api.snapshot import snapshot, snapshot_key
from deepvid_plugin.api.store import (
    InstanceOverview,
    MemoryStore,
    NoDataError,
    RecordStore,
    RunOverview,
)
from deepvid_plugin.record import SCHEMA_VERSION

__all__ = [
    "DEFAULT_KIND", "EVIDENCE_KEYS", "ROUTES", "SCHEMA_VERSION", "THUMB_SIZE", "ApiError",
    "Catalog", "InstanceOverview", "MemoryStore", "NoDataError", "RecordStore", "Route",
    "RunOverview", "channel_mean", "compare_impl", "decode_map", "encode_image", "encode_map",
    "has_evidence", "instances_impl", "json_loads_object", "kind_params", "kinds_impl",
    "parse_instance", "parse_kind", "parse_run", "parse_runs", "parse_step", "record_impl",
    "respond", "runs_impl", "snapshot", "snapshot_key", "step_summary", "summary_fidelity",
    "timeline_impl", "with_changed",
]
