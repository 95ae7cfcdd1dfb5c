"""Fixtures of the fault suite (one test per row of issue #19's table; docs/reliability.md)."""

from __future__ import annotations

import pytest


@pytest.fixture
def production(monkeypatch):
    """Outside the test suite's raise-everything mode, with MLflow's own client settings left at
    their defaults (7 retries, 120 s timeouts): the sink must bound its cost by itself."""
    monkeypatch.delenv("DEEPVID_TESTING", raising=False)
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(autouse=True)
def _quiet_downloads(monkeypatch):
    # MLflow prints a progress bar per download; keep the fault suite's log readable.
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
