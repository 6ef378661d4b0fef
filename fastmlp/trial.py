"""One trial of a sweep: its data folder, and running it in a Dask worker.

A trial is ``fastmlp train`` with the trial's flags, called in the worker's own
process through :func:`fastmlp.train.main` (no shelling out). Its folder gets
what ``train`` writes (checkpoint.npz, model.npz, metrics.json) plus
``train.log``, the trainer's console output.

The test set is never shown to a trial. The sweep splits the training set the
way ``train --val-split V --seed S`` does (:func:`fastmlp.train.split_validation`)
and writes the two parts as an IDX folder whose test files are the validation
part; the trial trains on that folder with ``--val-split 0``. So a trial trains
on exactly the rows ``fastmlp train --val-split V --seed S`` trains on, and what
its metrics.json calls ``test_accuracy`` is that run's validation accuracy.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from .checkpoint import NAME as CHECKPOINT
from .data import write_idx
from .train import split_validation

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Test hook, for tests/test_sweep.py only: when the sweep's environment sets it to a
# file path, the first trial to start claims that file and kills its own worker
# process (SIGKILL) once its first checkpoint is on disk, mid-trial.
TEST_KILL_ENV = "FASTMLP_TEST_ONLY_KILL_WORKER"

# contextlib.redirect_stdout swaps the process-wide sys.stdout, so a worker with
# several threads runs its trials one at a time.
_ONE_TRIAL_AT_A_TIME = threading.Lock()


def split_folder(root, dataset, val_split, seed):
    """Where the sweep keeps the train/validation split of ``seed``."""
    return Path(root) / f"{dataset}-val{val_split:g}-seed{seed}"


def write_split(folder, x_train, y_train, val_split, seed):
    """Write the split of ``train --val-split val_split --seed seed`` as an IDX folder
    (training part as train-*, validation part as t10k-*) unless it is already there.

    x_train (n, 28, 28) uint8 images, y_train (n,) labels, in the data set's order."""
    folder = Path(folder)
    if all((folder / name).exists() for name in IDX_FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_val, y_val = split_validation(x_train, y_train, val_split, seed)
    for name, array in zip(IDX_FILES, (x_tr, y_tr, x_val, y_val)):
        write_idx(folder / name, array if array.dtype == np.uint8 else array.astype(np.uint8))
        (folder / name).chmod(0o644)  # write_idx's temp file is private; workers may run as other users
    return folder


def check_worker(sweep_file):
    """Run on every worker before a sweep: fastmlp's version, and whether it sees ``sweep_file``."""
    from . import __version__

    return __version__, os.path.isfile(sweep_file)


def run_trial(folder, settings_argv, place_argv, kill_marker=None):
    """Train one trial in ``folder`` with :func:`fastmlp.train.main`, in this process.

    settings_argv: the training flags; place_argv: where the data is and the device,
    also needed to resume. If an earlier attempt left a checkpoint (its worker was
    killed), the trial continues from it with ``--resume``. Returns
    ``{"status": "ok"}`` or ``{"status": "failed", "error": one line}``.
    """
    from .train import main

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / CHECKPOINT).exists():
        argv = ["--resume", str(folder), *place_argv]
    else:
        argv = [*settings_argv, *place_argv, "--out", str(folder)]
    stderr = io.StringIO()
    with _ONE_TRIAL_AT_A_TIME, open(folder / "train.log", "a") as log:
        log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: fastmlp train {' '.join(argv)}\n")
        log.flush()
        watcher = _test_only_killer(folder, kill_marker)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(stderr):
                code = main(argv)
        except SystemExit as exc:  # argparse rejected a flag
            code = exc.code
        finally:
            if watcher is not None:
                watcher.set()
            log.write(stderr.getvalue())
    if code == 0:
        return {"status": "ok"}
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    error = lines[-1].removeprefix("fastmlp: error: ") if lines else f"exit status {code}"
    return {"status": "failed", "error": error}


def _test_only_killer(folder, marker):
    """The TEST_KILL_ENV hook: claim ``marker`` (once per sweep) and SIGKILL this worker
    as soon as ``folder`` holds a checkpoint. Returns an Event that stops the watch."""
    if not marker:
        return None
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return None
    os.write(fd, folder.name.encode())
    os.close(fd)
    done = threading.Event()

    def watch():
        while not done.wait(0.001):
            if (folder / CHECKPOINT).exists():
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    return done
