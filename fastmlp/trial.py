"""One trial of a sweep: its data folder, and running it in a Dask worker.

A trial is one :func:`fastmlp.run` call with the trial's
:class:`~fastmlp.config.TrainConfig`, in the worker's own process (no shelling
out, no command line). Its folder gets what ``fastmlp train`` writes
(checkpoint.npz, model.npz, metrics.json) plus ``train.log``, the lines the run
prints. A trial whose folder already holds a checkpoint (its worker was killed)
continues from it with :func:`fastmlp.training.resume`.

The test set is never shown to a trial. The sweep splits the training set the
way ``train --val-split V --seed S`` does (:func:`fastmlp.config.split_validation`)
and writes the two parts as an IDX folder whose test files are the validation
part; the trial trains on that folder with ``val_split=0``. So a trial trains
on exactly the rows ``fastmlp train --val-split V --seed S`` trains on, and what
its metrics.json calls ``test_accuracy`` is that run's validation accuracy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .checkpoint import NAME as CHECKPOINT
from .config import TrainConfig, split_validation
from .data import write_idx
from .errors import FastMLPError, one_line

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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


def trial_config(settings, folder, data_dir, device=None):
    """The TrainConfig of a trial: its ``settings`` (the sweep's record of them, see
    :meth:`TrainConfig.record`), trained on the split in ``data_dir`` (so with no
    validation split of its own) into ``folder``, quietly and without plots."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    return TrainConfig(**{**values, "val_split": 0.0}, data_dir=str(data_dir), download=False, device=device,
                       out=str(folder), plots=False, quiet=True)


def _wait_for_other_attempt(folder, log):
    """Wait while another process holds the trial's folder: an attempt of this trial
    that an interrupted sweep left running (on an existing cluster, a running task
    finishes after its sweep has gone). Returns whether there was one to wait for."""
    from .files import FolderBusy, lock_folder

    try:
        fd = lock_folder(folder)
        waited = False
    except FolderBusy:
        log(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: another process is training this trial "
            "(left running by an interrupted sweep); waiting for it to finish, then adopting its result")
        fd = lock_folder(folder, wait=True)
        waited = True
    if fd is not None:
        os.close(fd)
    return waited


def _outcome(folder):
    """What a trial that has finished (or stopped early) in ``folder`` returns, from its metrics.json."""
    m = json.loads((Path(folder) / "metrics.json").read_text())
    stopped = m.get("stopped_early") or None
    times = m.get("times") or {}
    return {"status": "ok", "val_acc": m["test_accuracy"], "epochs_done": len(m["epochs"]),
            "stopped_early": stopped["epoch"] if stopped else None, "train_seconds": m["train_seconds"],
            "startup_seconds": times.get("startup_s"), "compile_seconds": times.get("compile_s")}


def run_trial(folder, settings, data_dir, device=None, on_epoch=None):
    """Train one trial in ``folder`` with :func:`fastmlp.run`, in this process.

    settings: the trial's settings (:meth:`TrainConfig.record` of its config);
    data_dir: its split (:func:`write_split`); device: where to train;
    on_epoch: passed to :func:`fastmlp.run` (a sweep's pruner: called with each
    epoch's validation accuracy, True stops the trial). If an earlier attempt
    left a checkpoint (its worker was killed), the trial continues from it with
    :func:`fastmlp.training.resume`. If another process is training it now (an
    attempt an interrupted sweep left running), this waits for that one and
    adopts its result instead of failing. A trial that was stopped early by its
    ``on_epoch`` stays stopped: its result is returned as it is.

    Returns ``{"status": "ok", "val_acc", "epochs_done", "stopped_early" (the epoch,
    or None), "train_seconds", "startup_seconds", "compile_seconds"}`` or
    ``{"status": "failed", "error": one line}``.
    """
    from .training import resume, run

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "a") as log_file:
        def log(text):
            log_file.write(f"{text}\n")
            log_file.flush()

        try:
            waited = _wait_for_other_attempt(folder, log)
            stamp = f"== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}"
            if (folder / "metrics.json").exists() and _finished(folder, settings):
                log(f"{stamp}: finished {'by the attempt waited for' if waited else 'before'}; its result is adopted")
                return _outcome(folder)
            if (folder / CHECKPOINT).exists():
                log(f"{stamp}: fastmlp.resume({str(folder)!r}), as 'fastmlp train --resume {folder}'")
                resume(folder, data_dir=str(data_dir), device=device, plots=False, quiet=True, log=log, warn=log,
                       on_epoch=on_epoch)
            else:
                config = trial_config(settings, folder, data_dir, device)
                log(f"{stamp}: fastmlp.run({config!r})")
                run(config, log=log, warn=log, on_epoch=on_epoch)
            return _outcome(folder)
        except (FastMLPError, MemoryError) as exc:
            error = one_line(exc) or type(exc).__name__
            log(f"fastmlp: error: {error}")
            return {"status": "failed", "error": error}


def _finished(folder, settings):
    """Whether the run in ``folder`` is over: all its epochs, its target reached, or stopped early."""
    try:
        m = json.loads((Path(folder) / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(len(m.get("epochs") or []) >= int(settings["epochs"]) or m.get("stopped_early")
                or (m.get("target") or {}).get("reached"))
