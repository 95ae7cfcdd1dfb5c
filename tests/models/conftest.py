"""One torch thread for the model-zoo tests: these are many small convolutions, and on the
shared two-core test machine two threads contend with every other process (measured: a
MobileNetV3 forward of 20 images at 64 px took 0.4-1.1 s with two threads, 0.05 s with one)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
