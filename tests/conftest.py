import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA, skipped without it; `pytest -m gpu` runs only these")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def cpu_unless_marked_gpu(request, monkeypatch):
    """Tests run on the CPU, as in CI, also on a machine with a GPU: every "auto" device is the CPU and the
    processes a test starts see no GPU (their numbers, the bit-exact ones above all, are CPU fp32 claims).
    Tests marked gpu keep the GPU."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def one_thread():
    """Every test uses tiny tensors: one thread avoids OpenMP oversubscription on a busy 2-core
    machine (up to 60x slower otherwise)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
