"""Training checkpoints: everything needed to continue a run exactly.

A checkpoint is a model file (``fastmlp.load`` reads it) with more in it:
the optimiser's state arrays (``opt.velocity``, ``opt.m``, ...), the loss of
every step so far as a float64 array (``history.iter_loss``), and in the JSON
``meta`` the optimiser's counters, the trainer's epoch and step counts, the
per-epoch history, the run's settings and where its data came from. The
shuffle of each epoch is drawn from (seed, epoch), so no random-generator
state needs saving.

It is written atomically (temp file in the same folder, fsync, rename) over
the previous one, so the file on disk is always the last *complete*
checkpoint: a kill during the write leaves the previous one, plus at most a
hidden temp file that is never read (and that the next run in the folder
removes).

Reading checks everything before it is used: only the members a checkpoint
needs are opened, each against the shape the model's sizes give, and the
JSON's fields against their types and ranges (counters are whole numbers below
2**53, see :mod:`fastmlp.jsonlimits`); anything else is a one-line DataError.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from .errors import DataError
from .files import atomic_write
from .jsonlimits import MAX_COUNT, count
from .io import NpzFile, model_arrays, read_model

NAME = "checkpoint.npz"
# History entries with one value per step (stored as arrays); the others have one per epoch.
_PER_STEP = ("iter_loss",)


def save_checkpoint(path, trainer, settings=None, class_names=None, data=None):
    """Write the state of ``trainer`` (model, optimiser, counters, history) to ``path``.

    ``settings`` (the run's options) and ``data`` (where its data came from) are
    stored as given, as JSON."""
    bk = trainer.backend
    counters, arrays = {}, {}
    for key, value in trainer.optimizer.state().items():
        if np.isscalar(value):
            counters[key] = value
        else:
            arrays[f"opt.{key}"] = bk.to_host(value)
    history = dict(trainer.history)
    for key in _PER_STEP:
        arrays[f"history.{key}"] = np.asarray(history.pop(key, []), dtype=np.float64)
    extra = {
        "checkpoint": {
            "optimizer": trainer.optimizer_name,
            "optimizer_counters": counters,
            "epochs_done": trainer.epochs_done,
            "step_count": trainer.step_count,
            "history": history,
            "settings": settings or {},
            "data": data,
        }
    }
    arrays.update(model_arrays(trainer.model, class_names, extra))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path, device=None):
    """(model, checkpoint dict, optimiser arrays) from ``path``; a DataError if it is
    not a complete, well-formed fastmlp checkpoint."""
    with NpzFile(path, "checkpoint") as npz:
        model, meta = read_model(npz, device)
        if "checkpoint" not in meta:
            raise DataError(f"{path}: a model file, not a training checkpoint; train again or pass the run's folder to --resume")
        ck = _check(meta["checkpoint"], path)
        history = ck["history"]
        for key in _PER_STEP:
            if f"history.{key}" in npz.names:
                history[key] = npz.read(f"history.{key}", shape=(ck["step_count"],), dtype=np.float64).tolist()
            elif _numbers(history.get(key)) and len(history[key]) == ck["step_count"]:
                pass  # per-step values as a JSON list in the meta: read as they are
            else:
                raise DataError(f"{path}: malformed checkpoint (no {ck['step_count']} per-step values of {key!r})")
        opt_arrays = {
            name[len("opt."):]: npz.read(name, shape=(model.n_params,), dtype=model.dtype)
            for name in sorted(npz.names) if name.startswith("opt.")
        }
    return model, ck, opt_arrays


def _numbers(values):
    return isinstance(values, list) and all(v is None or isinstance(v, Real) and not isinstance(v, bool) for v in values)


def _count(value):
    return count(value, MAX_COUNT)


def _counter(value):
    """An optimiser counter: a whole number in 0..2**53 (it becomes a device int64), or
    a finite number of at most that size."""
    return _count(value) or isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_COUNT


def _target(value):
    """history['target'] (Trainer's target_accuracy record): named numbers, flags and the split."""
    return isinstance(value, dict) and all(isinstance(v, (Real, str, type(None))) for v in value.values())


def _check(ck, path):
    """The checkpoint part of the meta, its fields type-checked."""
    if not isinstance(ck, dict):
        raise DataError(f"{path}: malformed checkpoint (its 'checkpoint' entry is not an object)")
    history = ck.get("history")
    checks = {
        "optimizer": isinstance(ck.get("optimizer"), str),
        "optimizer_counters": isinstance(ck.get("optimizer_counters"), dict) and all(
            _counter(v) for v in ck["optimizer_counters"].values()),
        "epochs_done": _count(ck.get("epochs_done")),
        "step_count": _count(ck.get("step_count")),
        "settings": isinstance(ck.get("settings"), dict),
        "data": ck.get("data") is None or isinstance(ck["data"], dict),
        "history": isinstance(history, dict) and all(
            key in _PER_STEP or _numbers(v) and len(v) == ck.get("epochs_done") or isinstance(v, (Real, type(None)))
            or key == "target" and _target(v)
            for key, v in history.items()),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise DataError(f"{path}: malformed checkpoint (missing or malformed {', '.join(bad)}); it was not written by fastmlp")
    return ck


def restore(trainer, checkpoint, opt_arrays, path=NAME):
    """Put the optimiser state, counters and history of a checkpoint (read from
    ``path``) into ``trainer`` (whose model already holds the checkpoint's parameters)."""
    if checkpoint["optimizer"] != trainer.optimizer_name:
        raise DataError(
            f"{path} was written by optimizer {checkpoint['optimizer']!r}, not {trainer.optimizer_name!r}"
        )
    try:
        trainer.optimizer.load_state({**checkpoint["optimizer_counters"], **opt_arrays})
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: its optimiser state does not fit this model (missing or malformed {exc})") from None
    trainer.epochs_done = checkpoint["epochs_done"]
    trainer.step_count = checkpoint["step_count"]
    history = dict(checkpoint["history"])
    if "lr" in history and "lr_end" not in history:
        # 'lr' held the rate of each epoch's first step: not the lr_end this history keeps
        history.pop("lr")
        history["lr_end"] = [None] * checkpoint["epochs_done"]
    trainer.history.update(history)
