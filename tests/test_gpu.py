"""The CUDA path on a real GPU: CPU<->GPU parity on MNIST, the CLI, flat memory.

Skipped, with the reason, where CuPy or a GPU is missing (CI has none; the CUDA
kernels themselves are still checked there under the simulator and as PTX).

Parity tolerance (float32): after one epoch from the same initial parameters in
the same batch order, |p_gpu - p_cpu| <= 1e-4 + 1e-3 |p_cpu| for every
parameter; the two devices sum in different orders inside cuBLAS/OpenBLAS, so
bit equality is not expected.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastmlp

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu():
    try:
        return fastmlp.get_backend("cuda")
    except fastmlp.DeviceError as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")


def _one_epoch(device, ds, perm, n, dtype="float32", cuda_graph="auto", graph_scope="step", optimizer="momentum"):
    model = fastmlp.MLP((784, 128, 64, 10), device=device, seed=0, dtype=dtype)
    trainer = fastmlp.Trainer(model, optimizer=optimizer, lr=0.05, momentum=0.9, batch_size=128, schedule="cosine",
                              progress=False, log=None, cuda_graph=cuda_graph, graph_scope=graph_scope)
    h = trainer.fit(ds.x_train[:n], ds.y_train[:n], 1, permutations=[perm], total_epochs=3)
    return model, h, trainer


def test_one_epoch_matches_the_cpu(gpu, mnist):
    n = len(mnist.x_train)
    perm = np.random.default_rng(0).permutation(n)
    cpu_model, cpu_h, _ = _one_epoch("cpu", mnist, perm, n)
    gpu_model, gpu_h, trainer = _one_epoch(gpu, mnist, perm, n)
    assert trainer.graph_info["mode"] == "graph", trainer.graph_info
    p_cpu, p_gpu = cpu_model.backend.to_host(cpu_model.params), gpu.to_host(gpu_model.params)
    bad = np.abs(p_gpu - p_cpu) > 1e-4 + 1e-3 * np.abs(p_cpu)
    assert not bad.any(), f"{bad.sum()} parameters differ, worst {np.abs(p_gpu - p_cpu).max():.3g}"
    np.testing.assert_allclose(gpu_h["train_loss"], cpu_h["train_loss"], rtol=1e-4)
    pred_cpu, pred_gpu = cpu_model.predict(mnist.x_test), gpu_model.predict(mnist.x_test)
    assert (pred_cpu != pred_gpu).sum() <= 10, "more than a handful of near-ties disagree"
    assert isinstance(pred_gpu, np.ndarray)


def test_same_seed_same_gpu_result(gpu, mnist):
    a = fastmlp.MLP((784, 32, 10), device=gpu, seed=1)
    b = fastmlp.MLP((784, 32, 10), device=gpu, seed=1)
    for m in (a, b):
        fastmlp.Trainer(m, batch_size=256, seed=3, progress=False, log=None).fit(mnist.x_train[:5000], mnist.y_train[:5000], 1)
    np.testing.assert_allclose(gpu.to_host(a.params), gpu.to_host(b.params), rtol=0, atol=1e-6)


def test_memory_pool_stays_flat_across_epochs(gpu, mnist):
    import cupy

    model = fastmlp.MLP((784, 128, 64, 10), device=gpu)
    trainer = fastmlp.Trainer(model, progress=False, log=None, schedule="constant")
    x, y = trainer.prepare(mnist.x_train, mnist.y_train)
    trainer.train_epoch(x, y, 0.05)
    pool = cupy.get_default_memory_pool()
    used = pool.used_bytes()
    for _ in range(2):
        trainer.train_epoch(x, y, 0.05)
    assert pool.used_bytes() <= used


def test_cli_trains_on_the_gpu(gpu, data_root, tmp_path):
    env = {**os.environ, "FASTMLP_DEVICE": "cuda"}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fastmlp.train", "--data-dir", str(data_root / "mnist"), "--epochs", "2", "--out", str(out), "--no-plots"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda") and metrics["test_accuracy"] > 0.95


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_float64_epoch_matches_the_cpu_to_1e10(gpu, mnist, optimizer):
    n = 20000  # a short last batch too (20000 = 156 * 128 + 32)
    perm = np.random.default_rng(1).permutation(n)
    cpu_model, _, _ = _one_epoch("cpu", mnist, perm, n, dtype="float64", optimizer=optimizer)
    gpu_model, _, _ = _one_epoch(gpu, mnist, perm, n, dtype="float64", optimizer=optimizer)
    p_cpu, p_gpu = cpu_model.params, gpu.to_host(gpu_model.params)
    rel = np.abs(p_gpu - p_cpu).max() / np.abs(p_cpu).max()
    assert rel <= 1e-10, f"float64 GPU vs CPU: max |diff| / max |p| = {rel:.3g}"


@pytest.mark.parametrize("scope", ["step", "epoch"])
def test_graph_replay_gives_the_eager_result(gpu, mnist, scope):
    n = 10000 + 17
    perm = np.random.default_rng(2).permutation(n)
    eager, h_eager, t_eager = _one_epoch(gpu, mnist, perm, n, cuda_graph="off")
    graph, h_graph, t_graph = _one_epoch(gpu, mnist, perm, n, cuda_graph="on", graph_scope=scope)
    assert t_eager.graph_info["mode"] == "eager" and t_graph.graph_info == {"mode": "graph", "scope": scope, "reason": "captured"}
    # the same kernels in the same order on the same data: bit-identical
    assert np.array_equal(gpu.to_host(eager.params), gpu.to_host(graph.params))
    assert h_eager["iter_loss"] == h_graph["iter_loss"]
