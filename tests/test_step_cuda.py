"""The whole CUDA training step, end to end, against the CPU path.

Runs under Numba's CUDA simulator (``test_cuda_simulator.py`` starts it in a
child process with ``NUMBA_ENABLE_CUDASIM=1``), or on a real GPU. The step is
the same :class:`fastmlp.step.TrainStep` the trainer uses, with every kernel the
CUDA one: gather, GEMMs with their epilogues, loss, loss sum, backward, the
optimiser reading its learning rate and step count from the device, advance.
The simulator cannot run CuPy, so the step runs on Numba device arrays that
share memory with NumPy buffers (``SimBackend.kernel_array``); on a GPU the
same test runs the real CuPy backend, where the list is captured as CUDA graphs.
"""

import functools

import numpy as np
import pytest
from numba import config

from fastmlp import MLP, Backend, DeviceError, Trainer, get_backend, kernels



class DeviceViewBackend(Backend):
    """NumPy buffers, CUDA kernels: each buffer is handed to the kernels as a Numba
    device array over the same memory, so what the kernels write is what the
    trainer reads back."""

    def __init__(self):
        super().__init__("cuda-kernels", np, kernels.cuda_kernels(0))

    def kernel_array(self, a):
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return FakeCUDAArray(a) if isinstance(a, np.ndarray) else a


def _device_backend():
    """The simulator's stand-in, or the real CUDA backend (CuPy) on a GPU."""
    if config.ENABLE_CUDASIM:
        return DeviceViewBackend()
    try:
        return get_backend("cuda")
    except DeviceError as exc:
        pytest.skip(f"no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set (test_cuda_simulator.py runs this): {exc}")


def _train(backend, optimizer, dtype, sizes=(20, 12, 7, 3), n=7, batch=4, epochs=2, loss="softmax", weighted=False,
           pixels=False, **recipe):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if pixels:  # uint8 on the device, scaled by the gather kernel
        X = rng.integers(0, 256, (n, sizes[0])).astype(np.uint8)
    y = rng.integers(0, max(sizes[-1], 2), n)
    model = MLP(sizes, device=backend, dtype=dtype, seed=1, loss=loss)
    trainer = Trainer(model, optimizer=optimizer, lr=0.1, batch_size=batch, weight_decay=1e-3, schedule="cosine",
                      progress=False, log=None, cuda_graph="auto", **recipe)
    Xd, yd = trainer.prepare(X, y)
    lr = lambda step: 0.1 / (1 + step)  # a different rate every step: lrs[state[0]] must pick the right one
    losses, wrng = [], np.random.default_rng(1)  # the weights from their own stream: the same batches either way
    for _ in range(epochs):
        kw = {}
        if weighted:  # a different factor for every row of the epoch, and decay rows per step
            trainer.optimizer.decay_per_row = 1e-2
            kw = dict(row_scale=wrng.uniform(0.2, 3.0, n), step_rows=wrng.uniform(1.0, 5.0, -(-n // batch)))
        losses.append(trainer.train_epoch(Xd, yd, lr, permutation=rng.permutation(n), **kw))
    return backend.to_host(model.params).copy(), np.concatenate(losses), trainer


# each simulated step runs every GPU thread in Python (about 1 s per step here): three
# mixes cover both optimisers, both dtypes, a full and a short batch, the epoch
# boundary (two epochs of the three-layer net), and the regularised step (dropout,
# label smoothing) on uint8 pixels; the other two take one epoch of a two-layer net
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the simulated hash, see dropout.py
@pytest.mark.parametrize("optimizer, dtype, sizes, epochs, recipe", [
    ("momentum", np.float64, (20, 12, 7, 3), 2, {}),
    ("adam", np.float32, (20, 12, 3), 1, {}),
    ("momentum", np.float32, (20, 12, 3), 1, dict(pixels=True, dropout=0.3, label_smoothing=0.1)),
])
def test_cuda_step_matches_the_cpu_step(optimizer, dtype, sizes, epochs, recipe):
    kw = dict(sizes=sizes, epochs=epochs, **recipe)
    cpu_params, cpu_losses, _ = _train(Backend("cpu", np, kernels.CPU_KERNELS), optimizer, dtype, **kw)
    sim_params, sim_losses, trainer = _train(_device_backend(), optimizer, dtype, **kw)
    assert trainer.optimizer.t == 2 * epochs and trainer.step_count == 2 * epochs
    rtol, atol = (2e-4, 2e-6) if dtype == np.float32 else (1e-10, 1e-13)
    np.testing.assert_allclose(sim_losses, cpu_losses, rtol=rtol, atol=atol)
    bad = ~(np.abs(sim_params - cpu_params) <= atol + rtol * np.abs(cpu_params))
    assert not bad.any(), f"{bad.sum()} parameters differ; first at {np.flatnonzero(bad)[:5]}"
    assert not np.array_equal(sim_params, MLP(sizes, dtype=dtype, seed=1).params), "training changed nothing"


def test_weighted_logistic_cuda_step_matches_the_cpu_step():
    # the two-class step: logistic_xent, then scale_rows reading each row's weight at state[0]
    args = ("sgd", np.float64)
    kw = dict(sizes=(20, 6, 1), loss="logistic", weighted=True)
    cpu_params, cpu_losses, _ = _train(Backend("cpu", np, kernels.CPU_KERNELS), *args, **kw)
    sim_params, sim_losses, trainer = _train(_device_backend(), *args, **kw)
    names = [getattr(fn, "__name__", "") for fn, _ in trainer._step.calls[4]]
    assert names.count("logistic_xent") == 1 and names.count("scale_rows") == 1, names
    np.testing.assert_allclose(sim_losses, cpu_losses, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sim_params, cpu_params, rtol=1e-10, atol=1e-13)
    unweighted = _train(Backend("cpu", np, kernels.CPU_KERNELS), *args, sizes=(20, 6, 1), loss="logistic")[0]
    assert np.abs(unweighted - cpu_params).max() > 1e-4, "the weights changed nothing"


def test_the_recorded_step_is_worked_out_once_and_replays_like_direct_calls():
    # every CUDA call of the step is bound when it is recorded (views, grids, scalar dtypes, split-K
    # scratch): a replay outside a graph only launches, and it does what calling the launchers does
    backend = _device_backend()
    _, _, trainer = _train(backend, "momentum", np.float64, sizes=(20, 12, 3), epochs=1)
    step = trainer._step
    for runs in step.runs.values():
        assert runs and all(isinstance(r, functools.partial) and r.func is kernels.run_launches for r in runs)
    start = [backend.to_host(a).copy() for a in (step.model.params, *step.optimizer.buffers())]

    def one_step(direct):
        for a, saved in zip((step.model.params, *step.optimizer.buffers()), start):
            a[...] = backend.asarray(saved)
        step.state[...] = backend.asarray(np.array([0, 5], dtype=np.int64))
        if direct:
            for fn, args in step.calls[4]:
                fn(*args)
        else:
            for run in step.runs[4]:
                run()
        backend.synchronize()
        return backend.to_host(step.model.params).copy(), backend.to_host(step.state).copy()

    (p_direct, s_direct), (p_bound, s_bound) = one_step(True), one_step(False)
    np.testing.assert_array_equal(p_bound, p_direct)
    assert np.abs(p_bound - start[0]).max() > 0, "the step changed nothing"
    assert s_bound.tolist() == s_direct.tolist() == [1, 6]
