"""Shared test set-up: one PyTorch thread per test process.

The tests run beside other work on small machines (CI has 2 cores); with several threads per
process, PyTorch's threads fight over the cores and a tiny training step can take 80x longer.
"""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="session")
def one_thread_for_fixtures():
    """Module- and session-scoped fixtures are made before a test's own set-up: at one thread too, so a result a
    fixture computed and the same computation inside the test add up in the same order (on some CPUs 1 and 2
    threads differ in the last bit, and test_imagine compares two grids exactly)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
