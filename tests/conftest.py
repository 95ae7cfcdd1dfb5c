"""Shared test set-up.

Fixtures for the real servers and the browser live in their own modules under tests/e2e/ and are
registered here, so every test directory can use them.
"""

import os

import pytest

# Sinks raise instead of warning under test (mlflow autologging's safe_function does the same),
# so a broken sink fails the suite instead of printing a warning nobody reads.
os.environ.setdefault("DEEPVID_TESTING", "1")

pytest_plugins = [
    "tests.e2e.fixtures_browser",
    "tests.e2e.fixtures_tensorboard",
    "tests.e2e.fixtures_mlflow",
]


@pytest.fixture
def artifacts_dir():
    """Where tests leave screenshots and other artifacts for humans (test-artifacts/, git-ignored)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path
