"""Shared test set-up.

Fixtures for the real servers and the browser live in their own modules under tests/e2e/ and are
registered here, so every test directory can use them.
"""

import os

import pytest
import torch

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


# ---- the digits and the small CNN and VAE many method tests share (built once per session, only
# when a test asks for them) ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def digits():
    from deepvid_plugin.demo.digits import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def digits_cnn(digits):
    from deepvid_plugin.demo.digits import train_digits_cnn

    return train_digits_cnn(digits, epochs=8)


@pytest.fixture(scope="session")
def digits_vae(digits):
    from deepvid_plugin.explain import VAE

    vae = VAE.for_data(digits.x_train)
    vae.fit(digits.x_train, epochs=20, progress=False)
    return vae


@pytest.fixture
def linear_teacher():
    """softmax(Wx + b) on 8x8 images, with W centred over classes (softmax only identifies W up to
    a vector shared by all classes, so that is the part a student can recover)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, 64, generator=g)
    w = w - w.mean(0, keepdim=True)
    b = torch.randn(10, generator=g)
    return w, b, (lambda x: x.flatten(1) @ w.T + b)
