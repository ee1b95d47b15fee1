import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Every test uses tiny tensors: one thread avoids OpenMP oversubscription on a busy 2-core
    machine (up to 60x slower otherwise)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
