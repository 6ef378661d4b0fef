"""Training checkpoints: everything needed to continue a run exactly.

A checkpoint is a model file (``fastmlp.load`` reads it) with more in it:
the optimiser's state arrays (``opt.velocity``, ``opt.m``, ...), and in the
JSON ``meta`` the optimiser's counters, the trainer's epoch and step counts,
the history so far and the run's settings. The shuffle of each epoch is drawn
from (seed, epoch), so no random-generator state needs saving.

It is written atomically (temp file in the same folder, fsync, rename) over
the previous one, so the file on disk is always the last *complete*
checkpoint: a kill during the write leaves the previous one, plus at most a
hidden temp file that is never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError
from .io import atomic_write, model_arrays, model_from_arrays, read_npz

NAME = "checkpoint.npz"


def save_checkpoint(path, trainer, settings=None, class_names=None):
    """Write the state of ``trainer`` (model, optimiser, counters, history) to ``path``."""
    bk = trainer.backend
    counters, arrays = {}, {}
    for key, value in trainer.optimizer.state().items():
        if np.isscalar(value):
            counters[key] = value
        else:
            arrays[f"opt.{key}"] = bk.to_host(value)
    extra = {
        "checkpoint": {
            "optimizer": trainer.optimizer_name,
            "optimizer_counters": counters,
            "epochs_done": trainer.epochs_done,
            "step_count": trainer.step_count,
            "history": trainer.history,
            "settings": settings or {},
        }
    }
    arrays.update(model_arrays(trainer.model, class_names, extra))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path, device=None):
    """(model, checkpoint dict, optimiser arrays) from ``path``; a DataError if it is
    not a complete fastmlp checkpoint."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such checkpoint; --resume takes the output folder of an earlier run, which holds {NAME}")
    data = read_npz(path, "checkpoint")
    model, meta = model_from_arrays(data, path, device)
    if "checkpoint" not in meta:
        raise DataError(f"{path}: a model file, not a training checkpoint; train again or pass the run's folder to --resume")
    opt_arrays = {k[len("opt.") :]: v for k, v in data.items() if k.startswith("opt.")}
    return model, meta["checkpoint"], opt_arrays


def restore(trainer, checkpoint, opt_arrays):
    """Put the optimiser state, counters and history of a checkpoint into ``trainer``
    (whose model already holds the checkpoint's parameters)."""
    if checkpoint["optimizer"] != trainer.optimizer_name:
        raise DataError(
            f"checkpoint was written by optimizer {checkpoint['optimizer']!r}, not {trainer.optimizer_name!r}"
        )
    try:
        trainer.optimizer.load_state({**checkpoint["optimizer_counters"], **opt_arrays})
    except (KeyError, ValueError) as exc:
        raise DataError(f"checkpoint's optimiser state does not fit this model ({exc})") from None
    trainer.epochs_done = int(checkpoint["epochs_done"])
    trainer.step_count = int(checkpoint["step_count"])
    trainer.history.update(checkpoint["history"])
