import pytest

from tests.mlflow.runs import log_two_runs


@pytest.fixture(scope="session")
def two_runs(mlflow_server):
    """Runs A (fluent) and B (explicit run id) on the plain session server."""
    return log_two_runs(mlflow_server)


@pytest.fixture(autouse=True)
def _quiet_downloads(monkeypatch):
    # MLflow prints a progress bar per download; keep test logs readable.
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
