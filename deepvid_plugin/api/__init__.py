"""The JSON API of ``http_api.md`` (beside this package, in ``deepvid_plugin/``), computed once
for every backend.

Backends (the TensorBoard plugin, the MLflow app, the self-contained viewer) implement only the
small :class:`~deepvid_plugin.core.store.RecordStore` protocol and serve the route table
:data:`ROUTES`; every response shape is built here, so the frontend cannot tell them apart. The
parts:

- :mod:`.params`: request parsing and :class:`ApiError`;
- :mod:`.impl`: the routes' work (``*_impl``), generic over kinds;
- :mod:`.compare`: the compare route;
- :mod:`.metrics`: the metrics route (the run's own scalars, beside the explanations);
- :mod:`.hooks`: what a kind adds to the generic answers (its record JSON, its class maps);
- :mod:`.routes`: :data:`ROUTES` and :func:`respond`;
- :mod:`.snapshot`: every response at once, for the self-contained viewer (:mod:`.viewer`).

Nothing here imports TensorBoard, MLflow or torch.
"""

from __future__ import annotations

from deepvid_plugin.api.compare import compare_impl
from deepvid_plugin.api.impl import (
    alerts_impl,
    held_kinds,
    instances_impl,
    kinds_impl,
    record_impl,
    resolve_kind,
    runs_impl,
    timeline_impl,
)
from deepvid_plugin.api.metrics import metrics_impl
from deepvid_plugin.api.params import (
    ApiError,
    parse_instance,
    parse_kind,
    parse_run,
    parse_runs,
    parse_step,
)
from deepvid_plugin.api.routes import ROUTES, Catalog, Route, respond
from deepvid_plugin.api.snapshot import snapshot, snapshot_key
from deepvid_plugin.core.encode import (
    EVIDENCE_KEYS,
    THUMB_SIZE,
    channel_mean,
    decode_map,
    encode_image,
    encode_map,
    has_evidence,
    json_loads_object,
    summary_fidelity,
    with_changed,
)
from deepvid_plugin.core.record import SCHEMA_VERSION
from deepvid_plugin.core.store import (
    InstanceOverview,
    MemoryStore,
    MetricSeries,
    NoDataError,
    RecordStore,
    RunOverview,
)

__all__ = [
    "EVIDENCE_KEYS", "ROUTES", "SCHEMA_VERSION", "THUMB_SIZE", "ApiError", "Catalog",
    "InstanceOverview", "MemoryStore", "MetricSeries", "NoDataError", "RecordStore", "Route", "RunOverview",
    "alerts_impl",
    "channel_mean", "compare_impl", "decode_map", "encode_image", "encode_map", "has_evidence",
    "held_kinds", "instances_impl", "json_loads_object", "kinds_impl", "metrics_impl", "parse_instance", "parse_kind",
    "parse_run", "parse_runs", "parse_step", "record_impl", "resolve_kind", "respond",
    "runs_impl", "snapshot", "snapshot_key", "summary_fidelity", "timeline_impl", "with_changed",
]
