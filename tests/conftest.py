"""Shared test set-up: one PyTorch thread per test process.

The tests run beside other work on small machines (CI has 2 cores); with several threads per
process, PyTorch's threads fight over the cores and a tiny training step can take 80x longer.
"""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
