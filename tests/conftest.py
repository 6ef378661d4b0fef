"""Shared fixtures. Real data comes only through FASTMLP_DATA_DIR (CI sets it to
the folder holding mnist/ and fashion-mnist/); tests that need it skip, saying
so, when it is unset."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from kernel_cases import CUDA_TEST_FILES, simulator_on_one_core

from fastmlp.data import write_idx


def pytest_configure(config):
    # Under pytest -n auto there is one worker process per core: each keeps to one
    # BLAS and one OpenMP thread, so the workers do not fight over the cores (OpenBLAS
    # and OpenMP threads that wait for a busy core slow down many times over). NumPy's
    # OpenBLAS is loaded already; SciPy's and scikit-learn's OpenMP load later and
    # read the variables then, as do the processes the tests start. A hook, not module
    # code: processes that import this file (Dask workers unpickling a test's
    # function) keep their own defaults.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import signal

        from threadpoolctl import threadpool_limits

        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"
        threadpool_limits(1)
        # xdist's workers ignore SIGINT (the controller handles Ctrl-C), and an ignored
        # signal stays ignored in every process they start: the tests of Ctrl-C need
        # Python's own handler, as in a terminal
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        simulator_on_one_core()


@pytest.fixture(scope="session")
def data_root():
    root = os.environ.get("FASTMLP_DATA_DIR")
    if not root:
        pytest.skip("FASTMLP_DATA_DIR is not set: point it at the folder holding mnist/ and fashion-mnist/")
    return Path(root)


@pytest.fixture(scope="session")
def mnist(data_root):
    from fastmlp import load_mnist

    return load_mnist(data_dir=data_root, download=False)


def make_idx_dataset(folder, n_train=240, n_test=60, seed=0, gz=True):
    """A tiny learnable MNIST look-alike: each class is a bright bar at its own row band."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 250
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", y.astype(np.uint8))
    return folder


@pytest.fixture
def tiny_dir(tmp_path):
    return make_idx_dataset(tmp_path / "tiny")


@pytest.fixture(scope="session")
def dask_cluster():
    """A real Dask LocalCluster: 2 single-threaded worker processes with 1 BLAS thread each
    (Dask's default; what ``fastmlp sweep`` starts on a 2-core machine). Skipped without Dask."""
    distributed = pytest.importorskip("distributed", reason='needs Dask: pip install "fastmlp[sweep]"')
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.ERROR) as cluster:
        yield cluster


def _cuda_available():
    from numba import cuda

    return cuda.is_available()


# Without a GPU the CUDA kernel tests run only in test_cuda_simulator.py's child
# process (under NUMBA_ENABLE_CUDASIM=1), where they are reported one by one;
# collecting them here as well would only add skips.
collect_ignore = [] if _cuda_available() else list(CUDA_TEST_FILES)


def pytest_terminal_summary(terminalreporter):
    """Show which CUDA kernel tests ran under the simulator child process."""
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", []):
            if name == "cuda_simulator":
                terminalreporter.write_line(f"CUDA kernels under Numba's simulator: {value}")


def pytest_collection_modifyitems(config, items):
    # The simulator runs are the suite's longest tests (up to a minute each): started
    # first, they overlap the rest under pytest -n auto instead of running on alone at
    # the end. The sort is stable; the other tests keep their order.
    slow_first = ("test_cuda_simulator.py", "test_robust_memory_bench.py")
    items.sort(key=lambda item: not item.nodeid.split("::")[0].endswith(slow_first))
