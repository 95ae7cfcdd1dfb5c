import pytest
import torch

from deepvid_plugin.digits import load_digits, train_digits_cnn
from deepvid_plugin.explain import VAE


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def digits_cnn(digits):
    return train_digits_cnn(digits, epochs=8)


@pytest.fixture(scope="session")
def digits_vae(digits):
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
