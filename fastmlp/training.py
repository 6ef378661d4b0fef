"""The library call behind ``fastmlp train``: :func:`run` a :class:`~fastmlp.config.TrainConfig`
into an output folder, or :func:`resume` the run in one.

    >>> import fastmlp
    >>> result = fastmlp.run(fastmlp.TrainConfig(epochs=5, out="runs/five"))
    >>> result.model, result.history, result.out, result.test_accuracy
    >>> fastmlp.resume("runs/five", epochs=10)   # the same run, continued to 10 epochs in all

Both write what the command line writes (checkpoint.npz, model.npz,
metrics.json and the plots) and return a :class:`TrainResult`. The command line
(:mod:`fastmlp.train`) and a sweep's trials (:mod:`fastmlp.trial`) call these.

Continuing a run to more epochs (``resume(folder, epochs=N)``, ``--resume RUN
--epochs N``): the run goes on with the learning-rate schedule of a run asked
for N epochs from the start, from the step it reached. With the ``constant``
schedule that is the schedule it had, so the result is bit for bit that of an
N-epoch run from the start (the shuffles depend only on (seed, epoch), and the
optimiser state is in the checkpoint). The ``step``, ``cosine`` and ``onecycle``
schedules depend on the run's length: they are re-planned for N epochs and
continue from the epoch reached (a finished cosine run, at a learning rate near
0, goes on from where an N-epoch cosine is at that epoch, so its rate rises
again and decays to 0 over the added epochs); the epochs already trained keep
the rates they had, so the result differs from an N-epoch run from the start,
unless those rates were the same in both plans (a run stopped within its
warm-up, which is a number of epochs and does not depend on the run's length).
The output says which of these happens.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import presets
from .config import SETTINGS, SettingError, TrainConfig, format_value, option, split_validation
from .errors import ConfigError, DataError, DivergenceError
from .interrupts import Interrupted, deferred

# Copies of the parameters a training run holds: parameters, gradients, two
# optimiser states and the host copy written to the checkpoint.
_TRAINING_COPIES = 5
# The schedules whose learning rate at a step does not depend on the run's length.
LENGTH_FREE_SCHEDULES = ("constant",)
# What each per-epoch column of metrics.json holds.
EPOCH_COLUMNS = {
    "epoch": "the epoch's number, from 1",
    "train_loss": "mean training loss of the epoch's steps (each step's loss as it was computed)",
    "train_acc": "accuracy on the training set after the epoch",
    "val_loss": "loss on the validation set after the epoch (null without one)",
    "val_acc": "accuracy on the validation set after the epoch (null without one)",
    "test_acc": "accuracy on the test set after the epoch",
    "epoch_time": "seconds of the epoch's training steps (evaluations excluded)",
    "samples_per_s": "training rows per second of epoch_time",
    "lr_end": "the learning rate of the epoch's last step",
}


@dataclass
class TrainResult:
    """What :func:`run` and :func:`resume` return.

    model: the trained :class:`~fastmlp.MLP`; history: the Trainer's history
    (per-epoch lists, ``iter_loss``, ...); out: the output folder; config: the
    run's :class:`~fastmlp.config.TrainConfig` (sizes resolved); test_accuracy:
    on the data's test set; times: seconds, named as in metrics.json's ``times``;
    finished_before: True when a resumed run had nothing left to do (nothing was
    rewritten)."""

    model: object
    history: dict
    out: Path
    config: TrainConfig
    test_accuracy: float | None
    times: dict
    finished_before: bool = False


def _stderr_line(text):
    print(text, file=sys.stderr, flush=True)


def run(config=None, *, log=print, warn=None, on_epoch=None):
    """Train a new run as ``config`` (a :class:`~fastmlp.config.TrainConfig`; default:
    ``TrainConfig()``, the ``default`` preset) says, into ``config.out`` (default: a
    new ``runs/<dataset>-<time>``); returns a :class:`TrainResult`.

    ``log(line)`` gets the lines ``fastmlp train`` prints (``print`` by default;
    ``config.quiet`` leaves out the per-epoch lines and the progress bar),
    ``warn(line)`` the warnings (stderr by default).

    ``on_epoch(epoch, accuracy) -> bool``: called after each epoch (once its
    checkpoint is written) with the epoch's number, counted from 1, and its
    validation accuracy (the test accuracy when the run has no validation split,
    as for ``target_accuracy``); returning True stops the run there, as if it
    had been asked for that many epochs: the model and metrics.json are written,
    and metrics.json's ``stopped_early`` records the epoch. A sweep's pruner
    reaches its trials this way."""
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"run() takes a fastmlp.TrainConfig, got {type(config).__name__}")
    return _run(config, None, {}, False, log, warn or _stderr_line, on_epoch)


def resume(folder, epochs=None, *, data_dir=None, device=None, allow_other_data=False, expect=None, log=print,
           warn=None, on_epoch=None, **options):
    """Continue the run in ``folder`` (the output folder of :func:`run`) from its
    last checkpoint, with the settings it recorded; returns a :class:`TrainResult`.

    ``epochs``: continue to that many epochs in all (default: the run's own); see
    the module's documentation for what happens to the learning-rate schedule.
    ``data_dir``: where its data is now (default: where the checkpoint says it
    was); the data must be the same files unless ``allow_other_data``. ``device``
    and ``options`` (``cuda_graph``, ``plots``, ``quiet``, ``verbose``): how to run
    it this time. ``expect``: {setting: value} the caller assumes the run has (the
    flags given with ``--resume``); any that differ are a ConfigError.
    ``on_epoch``: as for :func:`run` (epochs the run had trained before are not
    reported again)."""
    placement = {"data_dir": data_dir, "device": device, **options}
    unknown = set(options) - {"cuda_graph", "plots", "quiet", "verbose", "download"}
    if unknown:
        raise ConfigError(f"resume() has no option {', '.join(sorted(unknown))}; a resumed run keeps its settings "
                          "(epochs can change)")
    request = SimpleNamespace(folder=Path(folder), epochs=epochs, placement=placement,
                              allow_other_data=allow_other_data)
    return _run(None, request, expect or {}, True, log, warn or _stderr_line, on_epoch)


def _run(config, request, expect, resuming, log, warn, on_epoch=None):
    from .backend import get_backend
    from .runfolder import ASIDE, RunFolder

    t_start = time.perf_counter()
    device = request.placement["device"] if resuming else config.device
    backend = get_backend(device)
    if not resuming and config.sizes:
        from . import io

        io.check_fits(config.sizes, config.dtype, _TRAINING_COPIES, ConfigError, "choose smaller --sizes")
    state = SimpleNamespace(saved=None, commit=lambda: None)  # the epoch of the checkpoint on disk, for the interrupt report
    folder = None
    try:
        if resuming:
            folder = RunFolder.resume(request.folder, warn)
        else:
            folder = RunFolder.new(config.out, config.dataset, config.overwrite, warn)
        state.commit = folder.commit  # the run --overwrite replaces goes once this one has written its first checkpoint
        return _run_in(folder.path, config, request, expect, backend, state, log, t_start, on_epoch)
    except Interrupted as stop:
        if state.saved is None:
            where = "no checkpoint was written, so there is nothing to resume"
            if folder is not None and os.path.lexists(folder.path / ASIDE):
                where += f"; the earlier run --overwrite set aside goes back into {folder.path}"
        else:
            import shlex

            command = [sys.executable, "-m", "fastmlp.train", "--resume", str(folder.path)]
            if device:
                command += ["--device", device]
            where = f"the checkpoint of epoch {state.saved} is in {folder.path}; continue with: {shlex.join(command)}"
        warn(f"fastmlp: stopped by {stop.name}; {where}")
        raise
    finally:
        if folder is not None:
            folder.close()  # puts back the run --overwrite set aside if this one wrote nothing


def recipe_lines(config, log):
    """The run's recipe: the preset and the flags it stands for, and what was changed."""
    values = presets.preset(config.preset)
    log(f"preset {config.preset}: {presets.as_flags(values)}")
    changed = {k: getattr(config, k) for k, v in values.items() if getattr(config, k) != v}
    if changed:
        log(f"changed from the preset: {presets.as_flags(changed)}")


def _flag(key, value):
    return f"{option(key)} {format_value(value)}"


def _check_expected(expect, config, out):
    conflicts = [key for key in SETTINGS if key in expect and key != "epochs" and expect[key] != getattr(config, key)]
    if conflicts:
        raise ConfigError(
            f"{', '.join(_flag(k, expect[k]) for k in conflicts)}: the run in {out} has "
            f"{', '.join(_flag(k, getattr(config, k)) for k in conflicts)}, and a resumed run keeps its settings "
            "(only --epochs may change: it continues the run to that many epochs); "
            "leave these flags out, or start a new run with --out"
        )


def _data_record(ck, data_dir, path):
    """(the data_dir to load, the checkpoint's record of its data or None); ``data_dir``
    overrides the recorded location."""
    record = ck["data"]
    if record is None:
        if data_dir is None:
            raise ConfigError(f"{path} does not record where its data came from; "
                              "pass --data-dir with the data it trained on")
        return data_dir, None
    files = record.get("files")
    if not (isinstance(record.get("location"), str) and isinstance(files, dict)
            and all(isinstance(v, str) for v in files.values())):
        raise DataError(f"{path}: malformed checkpoint (its data record is not a location and file fingerprints)")
    return data_dir or record["location"], record


def _check_same_data(ds, record, out):
    theirs = sorted(record["files"].values())
    if sorted(ds.files.values()) == theirs:
        return
    changed = [name for name, sha in ds.files.items() if sha not in theirs] or sorted(ds.files)
    how = "changed since" if ds.location == record["location"] else f"differ from those in {record['location']}"
    raise DataError(
        f"the data in {ds.location} is not the data the run in {out} trained on ({', '.join(changed)} {how}); "
        "point --data-dir at that data, or pass --allow-other-data to continue on this data"
    )


def _resumed_config(ck, request, expect, out, path):
    """The run's config from its checkpoint, with this call's placement and epochs."""
    try:
        config = TrainConfig.from_record(ck["settings"], out=str(out),
                                         **{k: v for k, v in request.placement.items() if v is not None})
    except SettingError as exc:
        raise DataError(f"{path}: {exc}; it was not written by this command") from None
    _check_expected(expect, config, out)
    if request.epochs is not None:
        config = dataclasses.replace(config, epochs=request.epochs)
    return config


def _extension_line(trainer, config, recorded_epochs, out):
    """What continuing a run planned for ``recorded_epochs`` to ``config.epochs`` does to its schedule."""
    from .optim import make_schedule

    done, total = trainer.epochs_done, config.epochs
    head = f"continuing the run in {out} from epoch {done} to {total} epochs (it was set to {recorded_epochs})"
    steps = trainer.history.get("steps_per_epoch") or 0
    if config.schedule in LENGTH_FREE_SCHEDULES or not steps:
        return (f"{head}: the {config.schedule} schedule does not depend on the run's length, so the result is "
                f"that of a {total}-epoch run from the start")

    def plan(epochs):
        return make_schedule(config.schedule, config.lr, steps * epochs, steps, warmup_steps=round(config.warmup * steps))

    at = trainer.step_count
    old, new = plan(recorded_epochs), plan(total)
    before = old(min(at, steps * recorded_epochs) - 1) if at else new(0)
    line = (f"{head}: the {config.schedule} schedule is re-planned for {total} epochs and goes on from epoch {done} "
            f"at lr {new(at):.4g} (its last step had lr {before:.4g}); ")
    if all(old(s) == new(s) for s in range(at)):  # e.g. only warm-up steps so far
        return line + f"the steps already trained had the rates of that plan too, so the result is that of a " \
                      f"{total}-epoch run from the start"
    return line + (f"the {done} epochs already trained keep the rates they had, so the result differs from a "
                   f"{total}-epoch run from the start")


def _run_in(out, config, request, expect, backend, state, log, t_start, on_epoch=None):
    from . import io, plots
    from .checkpoint import NAME, load_checkpoint, restore, save_checkpoint
    from .data import load_dataset
    from .model import MLP
    from .trainer import Trainer

    resumed, record, extension = None, None, None
    data_dir = config.data_dir if config else request.placement["data_dir"]
    if request is not None:
        if not (out / NAME).is_file():
            raise DataError(f"{out / NAME}: no such checkpoint; --resume takes the output folder of an earlier run, "
                            f"which holds {NAME}")
        resumed = load_checkpoint(out / NAME, device=backend)
        ck = resumed[1]
        config = _resumed_config(ck, request, expect, out, out / NAME)
        recorded_epochs = ck["settings"].get("epochs")
        state.saved = ck["epochs_done"]
        target = ck["history"].get("target") or {}
        if config.epochs < ck["epochs_done"]:
            raise ConfigError(f"the run in {out} has trained {ck['epochs_done']} epochs; --epochs {config.epochs} "
                              f"cannot take them back: give at least {ck['epochs_done']}")
        if ((ck["epochs_done"] >= config.epochs or target.get("reached"))
                and all((out / f).is_file() for f in ("model.npz", "metrics.json"))):
            accuracy = next((a for a in reversed(ck["history"].get("test_acc", [])) if a is not None), None)
            log((f"the run in {out} finished all {config.epochs} epochs" if ck["epochs_done"] >= config.epochs else
                 f"the run in {out} reached its target accuracy after epoch {ck['epochs_done']}")
                + (f" (test accuracy {100 * accuracy:.2f}%)" if accuracy is not None else "")
                + "; nothing to do, nothing rewritten")
            return TrainResult(resumed[0], ck["history"], out, config, accuracy, {}, finished_before=True)
        if config.epochs != recorded_epochs:
            extension = recorded_epochs
        data_dir, record = _data_record(ck, data_dir, out / NAME)

    t_load = time.perf_counter()
    # uint8 pixels: the trainer keeps them so on the device and scales each batch
    ds = load_dataset(config.dataset, data_dir=data_dir, download=config.download and resumed is None,
                      normalize=False)
    t_load = time.perf_counter() - t_load
    if record is not None and not (request and request.allow_other_data):
        _check_same_data(ds, record, out)
    sizes = config.resolved_sizes(ds.n_features, ds.n_classes)
    if sizes[0] != ds.n_features:
        raise ConfigError(f"--sizes starts with {sizes[0]} but {config.dataset} rows have {ds.n_features} features; "
                          f"start --sizes with {ds.n_features}")
    if sizes[-1] != ds.n_classes:
        raise ConfigError(f"--sizes ends with {sizes[-1]} but {config.dataset} has {ds.n_classes} classes; "
                          f"end --sizes with {ds.n_classes}")
    config = dataclasses.replace(config, sizes=tuple(sizes), hidden=tuple(sizes[1:-1]))
    x_tr, y_tr, x_val, y_val = split_validation(ds.x_train, ds.y_train, config.val_split, config.seed)

    if resumed:
        model = resumed[0]
        if model.sizes != tuple(sizes):
            raise ConfigError(f"checkpoint holds a {'-'.join(map(str, model.sizes))} model but the data needs {sizes}")
    else:
        model = MLP(sizes, config.activation, config.init, config.init_std, config.dtype, backend, seed=config.seed)
    model.class_names = list(ds.class_names)
    trainer = Trainer(model, **presets.trainer_kwargs(config), progress=not config.quiet,
                      log=log if not config.quiet else None, cuda_graph=config.cuda_graph)
    epochs_before, train_before = 0, 0.0
    if resumed:
        restore(trainer, resumed[1], resumed[2], out / NAME)
        epochs_before, train_before = trainer.epochs_done, float(sum(trainer.history["epoch_time"]))
        if extension is not None:
            log(_extension_line(trainer, config, extension, out))
        else:
            log(f"resuming {out} after epoch {trainer.epochs_done} of {config.epochs}")
    recipe_lines(config, log)
    if config.verbose:
        from .blas import describe

        log(f"BLAS: {describe()}")
    if not backend.is_gpu:
        from .blas import notice

        if notice():
            log(notice())
    log(f"device {backend.name}; data {ds.source} ({len(x_tr)} train, {len(ds.x_test)} test"
        + (f", {len(x_val)} validation" if x_val is not None else "") + f", loaded in {t_load:.1f} s)")
    log(f"model {'-'.join(map(str, sizes))} {config.activation} ({model.n_params:,} parameters, "
        f"{model.dtype.name}); {config.optimizer} lr {config.lr:g} {config.schedule}, batch {config.batch_size}, "
        f"{config.epochs} epochs, seed {config.seed}")

    settings = config.record()
    data = {"dataset": ds.name, "location": ds.location, "files": dict(ds.files)}
    every = config.checkpoint_every

    def checkpoint(tr):
        stopping = (tr.history.get("target") or {}).get("reached")  # the last epoch of a run that reached its target
        if every and (tr.epochs_done % every == 0 or tr.epochs_done == config.epochs or stopping):
            with deferred():  # a signal now waits until the checkpoint on disk is the one recorded
                save_checkpoint(out / NAME, tr, settings, ds.class_names, data)
                state.saved = tr.epochs_done
                state.commit()
        if on_epoch is not None:
            accuracy = tr.history["val_acc"][-1] if x_val is not None else tr.history["test_acc"][-1]
            if on_epoch(tr.epochs_done, accuracy) is True:
                stopped_early.append(tr.epochs_done)
                if every and state.saved != tr.epochs_done:  # the checkpoint holds the epoch it stopped at
                    with deferred():
                        save_checkpoint(out / NAME, tr, settings, ds.class_names, data)
                        state.saved = tr.epochs_done
                        state.commit()
                if tr.epochs_done < config.epochs:
                    log(f"stopped after epoch {tr.epochs_done} of {config.epochs}: asked to by on_epoch")
                return True
        return False

    stopped_early = []

    t_fit = time.perf_counter()
    remaining = config.epochs - trainer.epochs_done
    # Overflow on the way to a diverging loss is reported by the DivergenceError
    # below, in one line; NumPy's own warnings would only come before it.
    with np.errstate(all="ignore"):
        try:
            if remaining > 0:
                trainer.fit(x_tr, y_tr, remaining, X_test=ds.x_test, y_test=ds.y_test, X_val=x_val, y_val=y_val,
                            total_epochs=config.epochs, on_epoch=checkpoint)
        except DivergenceError as exc:
            if state.saved:
                raise DivergenceError(f"{exc}; the checkpoint of epoch {state.saved} in {out} is intact") from None
            raise
        history = trainer.history
        y_pred = model.predict(ds.x_test)
    test_acc = float((y_pred == ds.y_test).mean())
    io.save(model, out / "model.npz", class_names=ds.class_names)
    state.commit()  # with --checkpoint-every 0 the model is the first thing written
    training = float(sum(history["epoch_time"]))
    setup = history.get("setup_time", 0.0) if remaining > 0 else 0.0
    times = {
        "training_s": training,
        "training_before_s": train_before,
        "startup_s": (t_fit - t_start) + setup,
        "data_s": t_load,
        "compile_s": history.get("compile_time", 0.0) if remaining > 0 else 0.0,
    }
    times["total_s"] = time.perf_counter() - t_start
    times["other_s"] = max(0.0, times["total_s"] - times["startup_s"] - (training - train_before))
    metrics = {
        "dataset": config.dataset,
        "data_source": ds.source,
        "data": data,
        "device": backend.name,
        "cuda_graph": trainer.graph_info,
        "sizes": list(sizes),
        "settings": config.as_dict(),
        "test_accuracy": test_acc,
        "train_seconds": training,
        "times": times,
        "times_note": "training_s: the sum of epoch_time over every epoch of the run (training_before_s of them "
                      "before this command resumed it); startup_s: this command's loading, set-up and kernel "
                      "compilation (data_s, compile_s) before the first step; other_s: this command's evaluations "
                      "after each epoch, checkpoints, the model and these metrics; total_s: this command, from its start "
                      "to these metrics (the plots come after them)",
        "epoch_columns": EPOCH_COLUMNS,
        "epochs": [{k: (history[k][i] if k in history else None) for k in EPOCH_COLUMNS}
                   for i in range(len(history["epoch"]))],
        "iter_loss": history["iter_loss"],
        "steps_per_epoch": history["steps_per_epoch"],
        "preset": {"name": config.preset, "flags": presets.as_flags(presets.preset(config.preset))},
        "target": history.get("target"),
        "stopped_early": ({"epoch": stopped_early[-1], "by": "on_epoch"}
                          if stopped_early and stopped_early[-1] < config.epochs else None),
    }
    io.atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(metrics, indent=1, default=str).encode()))
    t_plots = time.perf_counter()
    written = ["model.npz", "metrics.json"] + ([NAME] if every else [])
    if config.plots:
        title = f"{config.dataset} {'-'.join(map(str, sizes))} {config.activation} on {backend.name}"
        plots.plot_history(history, out / "history.png", title=title)
        plots.plot_confusion(ds.y_test, y_pred, ds.class_names, out / "confusion.png", title=f"{config.dataset} test set")
        plots.plot_samples(ds.x_test, ds.y_test, y_pred, ds.class_names, out / "samples.png",
                           title=f"{config.dataset} test images: true → predicted")
        written += ["history.png", "confusion.png", "samples.png"]
    t_plots = time.perf_counter() - t_plots
    done = trainer.epochs_done
    log(f"test accuracy {100 * test_acc:.2f}% after {done} epoch{'s' if done != 1 else ''} on {backend.name}")
    log(_times_line(times, done, epochs_before) + (f"; then the plots, {t_plots:.1f} s" if config.plots else ""))
    log(f"wrote {', '.join(written)} to {out}")
    return TrainResult(model, history, out, config, test_acc, times)


def _times_line(t, epochs, epochs_before):
    before = (f"; {t['training_before_s']:.1f} s of it in the {epochs_before} epoch"
              f"{'s' if epochs_before != 1 else ''} before this command") if epochs_before else ""
    return (f"time: training {t['training_s']:.1f} s (the sum of {epochs} epoch{'s' if epochs != 1 else ''}{before}), "
            f"start-up {t['startup_s']:.1f} s (data {t['data_s']:.1f} s, compilation {t['compile_s']:.1f} s), "
            f"evaluation and output {t['other_s']:.1f} s, total {t['total_s']:.1f} s"
            + (" (this command)" if epochs_before else ""))
