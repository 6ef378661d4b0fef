"""Where a sweep's trials run: a Dask cluster, embedded or existing.

- No option: an in-process ``dask.distributed.LocalCluster`` sized to the
  machine: one single-threaded worker process per core (per GPU with
  ``device='cuda'``), and the cores shared out as BLAS threads, so that
  workers x BLAS threads = cores.
- ``scheduler='tcp://HOST:8786'`` or ``scheduler_file=PATH``: the workers of an
  existing cluster (``dask scheduler`` + ``dask worker --nthreads 1``, or
  dask-cuda's ``dask cuda worker`` on each GPU machine).

Dask is the optional extra ``fastmlp[sweep]``; nothing here imports it until a
cluster is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from .errors import FastMLPError

INSTALL_HINT = 'pip install "fastmlp[sweep]"'
BLAS_THREADS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def require_dask():
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise FastMLPError(f"fastmlp sweep runs its trials on Dask, which is not installed ({exc}); "
                          f"{INSTALL_HINT}") from None


def cores():
    """CPU cores this process may use (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def gpu_count():
    """GPUs CuPy can see (without making a CUDA context here); where there are none,
    the one-line DeviceError of ``get_backend('cuda')`` that says what is missing."""
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy, no driver: CuPy raises its own CUDARuntimeError
        n = 0
    if n == 0:
        from .backend import get_backend

        get_backend("cuda")
    return n


def trial_task(folder, settings, data_dir, device, gpu_per_worker=False, on_epoch=None):
    """What a worker runs for one trial: :func:`fastmlp.trial.run_trial`, on the embedded
    GPU cluster on device cuda:N for worker N (elsewhere each worker sees its own GPU
    as 'cuda', as dask-cuda's workers arrange with CUDA_VISIBLE_DEVICES). ``on_epoch``: the
    trial's per-epoch callback (a search's PruneReporter), or None."""
    from distributed import get_worker

    from .trial import run_trial

    if gpu_per_worker:
        device = f"cuda:{get_worker().name}"
    return run_trial(folder, settings, data_dir, device, on_epoch)


@contextlib.contextmanager
def open_client(device="cpu", workers=None, scheduler=None, scheduler_file=None):
    """A connected ``distributed.Client``; yields (client, description, gpu_per_worker)."""
    from distributed import Client, LocalCluster

    if scheduler or scheduler_file:
        where = scheduler or f"the scheduler in {scheduler_file}"
        try:
            client = Client(scheduler, scheduler_file=scheduler_file, timeout="20s")
        except (OSError, ValueError) as exc:
            raise FastMLPError(f"cannot reach the Dask scheduler at {where}: {exc}; "
                               "start one with 'dask scheduler' or check the address") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=60)
            except TimeoutError:
                raise FastMLPError(f"the Dask cluster at {where} has no workers after 60 s; start some with "
                                   "'dask worker ADDRESS --nthreads 1'") from None
            n = len(client.scheduler_info()["workers"])
            yield client, f"the Dask cluster at {client.scheduler.address} ({n} workers now)", False
        return
    if device == "cuda":
        gpus = gpu_count()
        if workers and workers > gpus:
            raise FastMLPError(f"--workers {workers} with --device cuda, but this machine has {gpus} GPU(s): "
                               "each worker trains on a GPU of its own")
        n = workers or gpus
    else:
        n = workers or cores()
    threads = max(1, cores() // n)
    with _starting_workers(threads):
        # no dashboard, and the scheduler's HTTP endpoints on a free port, not 8787 (another sweep's?)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        unit = "GPU" if device == "cuda" else "core"
        yield (client, f"an embedded Dask LocalCluster: {n} worker process{'es' if n > 1 else ''} "
               f"(one per {unit}), {threads} BLAS thread{'s' if threads > 1 else ''} each", device == "cuda")


@contextlib.contextmanager
def _starting_workers(blas_threads):
    """The process state worker processes inherit when they start (and keep on restarts):

    - SIGINT ignored, so that Ctrl-C in a terminal, which signals the whole process
      group, reaches only the sweep, which then closes the cluster itself, instead of
      every worker printing a KeyboardInterrupt;
    - ``blas_threads`` in the BLAS thread-count variables. BLAS reads them when NumPy
      is imported, before Nanny(env=...) applies, and Dask's pre-spawn environment
      (1 by default) gives way to variables already set in this process.
    """
    saved = {k: os.environ.get(k) for k in BLAS_THREADS_ENV}
    os.environ.update({k: str(blas_threads) for k in BLAS_THREADS_ENV})
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
