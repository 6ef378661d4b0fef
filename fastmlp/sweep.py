"""``fastmlp sweep``: train many configurations on Dask, keep the best.

    fastmlp sweep --lr 0.01,0.05,0.1 --hidden 128 256,64 --optimizer momentum,adam --seed 0,1,2
    fastmlp sweep --preset default,fast --epochs 5

Every setting flag of ``fastmlp train`` (every field of
:class:`~fastmlp.config.TrainConfig` that decides the result) takes several
values: a list ``a,b,c`` (for ``--sizes`` and ``--hidden``, values separated by
spaces), a range
``START:STOP:N`` (N evenly spaced values, both ends included) or
``START:STOP:logN`` (N log-spaced values). The trials are the grid of all
combinations or, with ``--random N``, N samples of it; a range without a count
is then sampled continuously (log-uniformly for ``START:STOP:log``). A trial's
settings are its ``--preset``'s (``default`` unless swept) with the values it
was given; each trial is one :func:`fastmlp.run` call in a worker
(:mod:`fastmlp.trial`).

Trials are compared on validation accuracy: each trains on the rows that
``fastmlp train --val-split V --seed S`` trains on and is scored on the rows it
holds out (see :mod:`fastmlp.trial`). The test set is evaluated once, for the
best trial only. The output folder holds:

- ``results.csv``: one row per trial, appended the moment it finishes;
- ``trials/<id>/``: what ``train`` writes (checkpoint.npz, model.npz,
  metrics.json), the lines it printed (train.log) and trial.json, with the
  ``fastmlp train`` command that repeats the trial;
- ``data/``: the train/validation split of each seed, read by the trials;
- ``sweep.png``: validation accuracy against training time, best trial marked;
- ``best-model.npz`` and ``best.json``: the best trial's model, settings and
  validation and test accuracy.

Running the same command on the same folder again skips the finished trials and
continues interrupted ones from their checkpoints.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import io
import itertools
import json
import math
import os
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import config as cfg
from .backend import parse_device
from .console import write_line
from .errors import ConfigError, FastMLPError
from .io import atomic_write

# Settings every trial shares (the data, how much of it validates, the checkpoint
# cadence); every other setting of train can take several values.
SHARED = ("dataset", "val_split", "checkpoint_every")
VARIED = tuple(k for k in cfg.SETTINGS if k not in SHARED)
# What decides a trial's result, and so its identity: a rerun finds its folder by these
# (its preset's values and its hidden sizes are in the others, resolved).
IDENTITY = tuple(k for k in cfg.SETTINGS if k not in ("checkpoint_every", "preset", "hidden"))
RESULT_COLUMNS = ("trial", "status", "val_acc", "epochs_done", "train_acc", "train_loss", "train_seconds",
                  "startup_seconds", "compile_seconds", *IDENTITY, "device", "pruned_reason", "error", "study_trial",
                  "finished_at", "preset", "hidden")
SEARCHES = ("grid", "random", "tpe")  # = fastmlp.search.SEARCHES (that module imports Optuna's names lazily)
PRUNERS = ("none", "median", "halving", "hyperband")
LOCK_NOTE = ".sweep-lock"  # who holds the sweep folder (the lock itself is flock on the folder)
DEFAULT_VAL_SPLIT = 0.1
TABLE_ROWS = 20  # trials shown in the final table; results.csv has them all
RANGE_HELP = "START:STOP:N or START:STOP:logN, e.g. 1e-3:1e-1:log5"
EPILOG = """\
Values: a list a,b,c (--sizes: values separated by spaces), or a range
START:STOP:N (N evenly spaced values, both ends included) or START:STOP:logN
(N log-spaced values). The trials are the grid of all combinations. With
--search random or tpe (Optuna), --trials N trials are drawn from the space,
where a range without a count (START:STOP or START:STOP:log) is sampled
continuously; --prune stops trials that fall behind the others early.

Trials are compared on validation accuracy; the test set is evaluated for the
best trial only. Running the same command on the same --out again skips the
finished trials.

Examples: fastmlp sweep --lr 1e-3:1e-1:log5 --optimizer momentum,adam --seed 0,1 --epochs 10
          fastmlp sweep --search tpe --prune median --trials 40 --lr 1e-3:1e-1:log --hidden 64 128 256
"""


class SpecError(ValueError):
    """A sweep flag that cannot be read; a usage error (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """Usage errors as one line, exit 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------
# The command line: train's flags, each taking several values
# --------------------------------------------------------------------------


def _train_actions():
    """The argparse actions of ``fastmlp train``'s setting flags (made from TrainConfig's
    fields, as train makes them) by setting name; the sweep's flags are made from them."""
    parser = argparse.ArgumentParser(add_help=False)
    cfg.add_arguments(parser, cfg.FIELDS)
    return {a.dest: a for a in parser._actions}


def _count(text):
    """A positive whole number (--random, --workers)."""
    try:
        return cfg.parse("batch_size", text)  # the same rule: an int > 0
    except cfg.SettingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number_kind(action):
    """int or float for a numeric flag (the type of its default), else None."""
    kind = type(action.default)
    return kind if kind in (int, float) else None


def _help(action, default, note=None):
    """train's help text with its default filled in, and ``note`` before the default."""
    text = (action.help or "") % {**vars(action), "default": default}
    if note:
        at = text.find(" (default:")
        text = f"{text}; {note}" if at < 0 else f"{text[:at]}; {note}{text[at:]}"
    return text.replace("%", "%%")


def build_parser(prog="fastmlp sweep"):
    actions = _train_actions()
    p = _Parser(prog=prog, description="Train many configurations of fastmlp train on Dask; keep the best.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("trial settings (flags of fastmlp train; several values make several trials)")
    for dest in VARIED:
        a = actions[dest]
        if dest in ("sizes", "hidden"):
            note = "several values separated by spaces"
        else:
            note = f"several values: a,b,c{' or a range START:STOP:N' if _number_kind(a) else ''}"
        g.add_argument(*a.option_strings, nargs="+", metavar="V", help=_help(a, a.default, note))
    g = p.add_argument_group("which trials to run, and which to stop early (Optuna)")
    g.add_argument("--search", choices=SEARCHES, default="grid",
                   help="grid: every combination; random or tpe: --trials N trials drawn from the space by Optuna's "
                        "random or TPE sampler (default: %(default)s)")
    g.add_argument("--prune", choices=PRUNERS, default="none",
                   help="stop a trial after an epoch when its validation accuracy falls behind: median (the median "
                        "of the completed trials at that epoch), halving (successive halving) or hyperband "
                        "(default: %(default)s)")
    g.add_argument("--trials", type=_count, metavar="N",
                   help="settings to train with --search random or tpe (a repeat of earlier settings does not count; "
                        "at most the space's points when every setting is a list; with grid: at most N of its points) "
                        "(default: the whole grid)")
    g.add_argument("--random", type=_count, metavar="N",
                   help="the older way: train N distinct samples of the grid, without Optuna (default: the whole grid)")
    g.add_argument("--random-seed", type=int, default=0, metavar="S",
                   help="seed of --random's samples and of --search's sampler (default: %(default)s)")
    g = p.add_argument_group("shared by every trial")
    for dest in ("dataset", "data_dir", "download", "val_split", "checkpoint_every"):
        a = actions[dest]
        default = DEFAULT_VAL_SPLIT if dest == "val_split" else a.default
        if a.nargs == 0:  # a switch: --no-download
            g.add_argument(*a.option_strings, dest=dest, action="store_false" if a.default else "store_true",
                           help=_help(a, default))
            continue
        g.add_argument(*a.option_strings, default=default, help=_help(a, default), type=a.type, choices=a.choices,
                       metavar=a.metavar)
    g = p.add_argument_group("where the trials run")
    g.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="cpu, or cuda for one GPU per trial (default: $FASTMLP_DEVICE, else cpu)")
    g.add_argument("--workers", type=_count, metavar="N",
                   help="worker processes of the embedded cluster (default: one per core, or per GPU)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on the Dask cluster at ADDRESS, e.g. tcp://host:8786 (default: an embedded LocalCluster)")
    g.add_argument("--scheduler-file", metavar="PATH",
                   help="run on the Dask cluster that wrote PATH (dask scheduler --scheduler-file) "
                        "(default: an embedded LocalCluster)")
    g.add_argument("--out", metavar="DIR",
                   help="sweep folder; running again into it skips finished trials (default: sweeps/<dataset>-<time>)")
    g.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


@dataclass
class Axis:
    """The values one setting takes: ``values`` for the grid (or to draw from), or
    a range without a count (``low``..``high``) that --random samples continuously."""

    dest: str
    values: list = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def varies(self):
        return self.low is not None or len(self.values) > 1

    def sample(self, rng, action):
        if self.low is None:
            return self.values[rng.integers(len(self.values))]
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return _number(action, x)


def _value(action, text):
    """One value of a flag, checked by train's own parser rules."""
    flag = action.option_strings[0]
    try:
        value = action.type(text) if action.type else text
    except argparse.ArgumentTypeError as exc:
        raise SpecError(f"{flag}: {exc}") from None
    except ValueError:
        raise SpecError(f"{flag}: expected {_number_kind(action).__name__} values, got {text!r}") from None
    if action.choices and value not in action.choices:
        raise SpecError(f"{flag}: {text!r} is not one of {', '.join(action.choices)}")
    return value


def _number(action, x):
    """A computed point of a range as the flag's type: ints rounded, floats to 12 digits."""
    text = str(round(x)) if _number_kind(action) is int else repr(float(f"{x:.12g}"))
    return _value(action, text)


def _range(action, text, sampling):
    """``START:STOP:N`` / ``START:STOP:logN`` -> list of values; ``START:STOP[:log]``
    (only with --random) -> (low, high, log)."""
    flag = action.option_strings[0]
    parts = text.split(":")
    count = parts[2] if len(parts) == 3 else None
    log = count is not None and count.startswith("log")
    digits = count[3:] if log else count
    try:
        if len(parts) not in (2, 3) or count == "" or (digits and not digits.isdigit()):
            raise ValueError
        low, high = float(parts[0]), float(parts[1])
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError
    except ValueError:
        raise SpecError(f"{flag}: cannot read the range {text!r}; write {RANGE_HELP}") from None
    if log and min(low, high) <= 0:
        raise SpecError(f"{flag}: the log range {text!r} needs ends > 0")
    _value(action, parts[0]), _value(action, parts[1])  # both ends must be valid values
    if not digits:
        if not sampling:
            raise SpecError(f"{flag}: the range {text!r} has no count; the grid needs {RANGE_HELP} "
                            "(or sample it continuously with --search random or tpe --trials N)")
        return low, high, log
    n = int(digits)
    if n < 1:
        raise SpecError(f"{flag}: the range {text!r} asks for {n} values; give a count >= 1")
    points = np.geomspace(low, high, n) if log else np.linspace(low, high, n)
    return [_number(action, x) for x in points]


def parse_axis(action, tokens, sampling):
    """The values the tokens given to one flag stand for."""
    flag = action.option_strings[0]
    pieces = tokens if action.dest in ("sizes", "hidden") else [p for t in tokens for p in t.split(",")]
    pieces = [p.strip() for p in pieces if p.strip()]
    if not pieces:
        raise SpecError(f"{flag}: empty list; give one or more values, e.g. {flag} a,b")
    axis = Axis(action.dest)
    for piece in pieces:
        if ":" not in piece or not _number_kind(action):
            axis.values.append(_value(action, piece))
            continue
        points = _range(action, piece, sampling)
        if isinstance(points, list):
            axis.values += points
        elif len(pieces) > 1:
            raise SpecError(f"{flag}: a range without a count ({piece!r}) must be the flag's only value")
        else:
            axis.low, axis.high, axis.log = points
    axis.values = list(dict.fromkeys(axis.values))  # once each, in order
    return axis


def uses_optuna(args):
    """Whether the sweep is an Optuna study (any --search but grid, or any --prune but none)."""
    return args.search != "grid" or args.prune != "none" or args.trials is not None


def parse_spec(args):
    """The axes the command line sweeps over (flags not given are left to train's defaults)."""
    if args.random is not None and uses_optuna(args):
        raise SpecError("--random N is the older way to sample the grid; with --search or --prune give --trials N "
                        "instead (e.g. --search random --trials N)")
    if args.search in ("random", "tpe") and args.trials is None:
        raise SpecError(f"--search {args.search} needs --trials N, the number of trials to run")
    actions = _train_actions()
    sampling = args.random is not None or args.search in ("random", "tpe")
    axes = [parse_axis(actions[d], getattr(args, d), sampling)
            for d in VARIED if getattr(args, d) is not None]
    if not args.val_split:
        raise SpecError("--val-split must be > 0: trials are compared on the validation set it holds out")
    if args.scheduler and args.scheduler_file:
        raise SpecError("give --scheduler or --scheduler-file, not both")
    if args.workers and (args.scheduler or args.scheduler_file):
        raise SpecError("--workers sizes the embedded cluster; an existing cluster (--scheduler) runs on its own workers")
    return axes


def configurations(axes, n_random=None, seed=0):
    """The settings of each trial: the grid of all axes, or ``n_random`` samples of it
    (without repeats while every axis is a list; ranges without a count sampled)."""
    if n_random is None or all(a.low is None for a in axes) and n_random >= math.prod(len(a.values) for a in axes):
        return [{a.dest: v for a, v in zip(axes, combo)} for combo in itertools.product(*(a.values for a in axes))]
    rng = np.random.default_rng(seed)
    if all(a.low is None for a in axes):
        shape = [len(a.values) for a in axes]
        picks = rng.choice(math.prod(shape), size=n_random, replace=False)
        return [{a.dest: a.values[i] for a, i in zip(axes, np.unravel_index(k, shape))} for k in picks]
    actions = _train_actions()
    return [{a.dest: a.sample(rng, actions[a.dest]) for a in axes} for _ in range(n_random)]


# --------------------------------------------------------------------------
# Trials
# --------------------------------------------------------------------------


@dataclass
class Trial:
    id: str
    settings: dict  # TrainConfig.record() of the trial's config: every setting, sizes resolved

    def flags(self, actions):
        """The train flags that give every setting of the trial, in train's order."""
        argv = []
        for dest in VARIED:
            value = self.settings[dest]
            if dest == "hidden":
                continue  # --sizes says it
            if value is not None:
                argv += [actions[dest].option_strings[0], _format(value)]
        return argv


def _format(value):
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def trial_settings(values, shared, features, classes):
    """The settings of the trial that ``values`` ({setting: value}, ``preset`` among
    them or 'default') and ``shared`` give, on data with ``features`` and ``classes``:
    TrainConfig's checks applied (a ConfigError naming the setting), sizes resolved."""
    config = cfg.TrainConfig.from_preset(values.get("preset", "default"),
                                         **{k: v for k, v in {**values, **shared}.items() if k != "preset"})
    sizes = config.resolved_sizes(features, classes)
    return {**config.record(), "sizes": list(sizes), "hidden": list(sizes[1:-1])}


def make_trials(configs, shared, features, classes):
    """Trial objects (each configuration once), named by a hash of their settings."""
    trials = {}
    for config in configs:
        settings = trial_settings(config, shared, features, classes)
        key = json.dumps({k: settings[k] for k in IDENTITY}, sort_keys=True)
        tid = hashlib.sha256(key.encode()).hexdigest()[:10]
        trials.setdefault(tid, Trial(tid, settings))
    return list(trials.values())


# --------------------------------------------------------------------------
# The results table
# --------------------------------------------------------------------------


def append_row(path, row):
    """Append one row to results.csv (header first if new), on disk before it returns.
    A results.csv whose header has other columns is first rewritten with these columns."""
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), None)
        if tuple(header or ()) != RESULT_COLUMNS:
            with open(path, newline="") as f:
                old = list(csv.DictReader(f))

            def write(f):
                text = io.StringIO(newline="")
                writer = csv.DictWriter(text, RESULT_COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(old)
                f.write(text.getvalue().encode())

            atomic_write(path, write)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, RESULT_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def read_rows(path):
    """{trial id: its last row} of results.csv."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["trial"]: row for row in csv.DictReader(f)}


def trial_row(trial, folder, outcome):
    """The results row of a trial from its metrics.json (or its failure).

    outcome: ``{"status": "ok" | "pruned" | "failed", "error", "pruned_reason", "study_trial"}``."""
    row = {k: _format(v) if v is not None else "" for k, v in trial.settings.items()}
    row.update(trial=trial.id, status=outcome["status"], error=outcome.get("error") or "",
               pruned_reason=outcome.get("pruned_reason") or "", study_trial=outcome.get("study_trial", ""),
               finished_at=_dt.datetime.now().isoformat(timespec="seconds"))
    if outcome["status"] in ("ok", "pruned") and (folder / "metrics.json").exists():
        m = json.loads((folder / "metrics.json").read_text())
        last = m["epochs"][-1]
        times = m.get("times") or {}
        # the trial's "test" files are the sweep's validation split (see fastmlp.trial)
        row.update(val_acc=m["test_accuracy"], epochs_done=len(m["epochs"]), train_acc=last["train_acc"],
                   train_loss=last["train_loss"], train_seconds=m["train_seconds"],
                   startup_seconds=times.get("startup_s", ""), compile_seconds=times.get("compile_s", ""),
                   device=m["device"])
    return row


# --------------------------------------------------------------------------
# Running the sweep
# --------------------------------------------------------------------------


def main(argv=None, prog="fastmlp sweep"):
    """``fastmlp sweep ARGS``; returns the exit status (2: a bad flag, 1: another error, 130: Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        axes = parse_spec(args)
        configs = configurations(axes, args.random, args.random_seed)
    except SpecError as exc:
        parser.error(str(exc))
    try:
        from .cluster import require_dask

        require_dask()
        return run_sweep(args, axes, configs, argv)
    except FastMLPError as exc:
        if args.debug:
            raise
        write_line(f"fastmlp: error: {exc}", sys.stderr)
        return 1
    except KeyboardInterrupt:  # before any trial started (while loading the data, say)
        print("fastmlp: interrupted", file=sys.stderr)
        return 130


def run_sweep(args, axes, configs, argv, log=write_line):
    """Run every trial not finished yet, then report; returns the exit status.

    The sweep folder is locked (``flock`` on the folder) for the whole command: a
    second sweep into it stops at once with one line."""
    device, _ = parse_device(args.device or os.environ.get("FASTMLP_DEVICE") or "cpu")
    out = Path(args.out or Path("sweeps") / f"{args.dataset}-{_dt.datetime.now():%Y%m%d-%H%M%S}").resolve()
    again = shlex.join(["fastmlp", "sweep", *argv, *([] if args.out else ["--out", str(out)])])
    lock = lock_sweep(out, log)
    try:
        meta = _read_meta(out)
        _check_same_kind(out, meta, args)
        data = SweepData(args, meta)
        if uses_optuna(args):
            from .sweep_study import run_study

            return run_study(args, axes, argv, again, device, out, data, log)
        return _run_grid(args, axes, configs, again, device, out, data, log)
    finally:
        if lock is not None:
            os.close(lock)


def lock_sweep(out, log=write_line):
    """Make ``out`` and lock it for this sweep (an fd to close at the end), or say in one
    line that another sweep runs in it. Returns None where the file system has no flock."""
    from .files import FolderBusy, lock_folder

    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--out {out} exists and is not a folder; choose another --out") from None
    except OSError as exc:
        raise FastMLPError(f"cannot create the sweep folder {out}: {exc.strerror or exc}; pass a writable --out") from None
    try:
        fd = lock_folder(out)
    except FolderBusy:
        try:
            who = (out / LOCK_NOTE).read_text().strip()
        except OSError:
            who = ""
        raise ConfigError(f"{out} is in use by another fastmlp sweep{f' ({who})' if who else ''}; wait for it to "
                          "finish (then run this command again: it continues where that one stopped), or choose "
                          "another --out") from None
    if fd is None:
        log(f"fastmlp: cannot lock {out} (its file system has no flock); make sure no other sweep uses it")
        return None
    try:
        note = f"pid {os.getpid()} on {os.uname().nodename}, since {_dt.datetime.now():%Y-%m-%d %H:%M:%S}"
        atomic_write(out / LOCK_NOTE, lambda f: f.write(note.encode()))
    except OSError:
        pass  # only informative
    return fd


def _read_meta(out):
    try:
        meta = json.loads((out / "sweep.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _check_same_kind(out, meta, args):
    """A sweep folder holds one kind of sweep: its --search and --prune stay."""
    if not meta.get("trials") and not (out / "study.journal").exists():
        return
    search, prune = meta.get("search", "grid"), meta.get("prune", "none")
    study = (out / "study.journal").exists()
    if (search, prune) != (args.search, args.prune) or study != uses_optuna(args):
        raise ConfigError(f"{out} holds a sweep run with --search {search} --prune {prune}; continue it with those "
                          "flags, or choose another --out")


class SweepData:
    """The data set, loaded only when something needs it: the number of features and
    classes are kept in sweep.json, and the splits in data/ are written once, so a
    re-run with nothing left to train loads nothing."""

    def __init__(self, args, meta):
        self.args = args
        known = meta.get("data") or {}
        same = known.get("dataset") == args.dataset and known.get("val_split") == args.val_split
        self.features = known.get("features") if same else None
        self.classes = known.get("classes") if same else None
        self._ds = None
        if self.features is None or self.classes is None:
            ds = self.ds
            self.features, self.classes = int(np.prod(ds.x_train.shape[1:])), len(ds.class_names)

    @property
    def ds(self):
        if self._ds is None:
            from .data import load_dataset

            ds = load_dataset(self.args.dataset, data_dir=self.args.data_dir, normalize=False, flatten=False,
                              download=self.args.download)
            if ds.name == "csv":
                raise ConfigError(f"{ds.source} is a CSV data set; fastmlp sweep reads IDX data sets "
                                  "(mnist, fashion-mnist)")
            self._ds = ds
        return self._ds

    @property
    def loaded(self):
        return self._ds is not None

    def record(self):
        return {"dataset": self.args.dataset, "val_split": self.args.val_split, "features": self.features,
                "classes": self.classes}

    def split(self, out, seed):
        """The folder of seed ``seed``'s train/validation split, written once per sweep folder."""
        from .trial import IDX_FILES, split_folder, write_split

        folder = split_folder(out / "data", self.args.dataset, self.args.val_split, seed)
        if all((folder / name).exists() for name in IDX_FILES):
            return str(folder)
        return str(write_split(folder, self.ds.x_train, self.ds.y_train, self.args.val_split, seed))


def _check_sizes(trials, args, data):
    for t in trials:
        sizes = t.settings["sizes"]
        if sizes[0] != data.features or sizes[-1] != data.classes:
            raise ConfigError(f"--sizes {_format(sizes)} does not fit {args.dataset}: start with its {data.features} "
                              f"features and end with its {data.classes} classes")


def _write_meta(out, again, args, data, trials, extra=None):
    info = {"command": again, "search": args.search, "prune": args.prune, "trials_asked": args.trials,
            "seed": args.random_seed if (args.random is not None or uses_optuna(args)) else None,
            "data": data.record(), **(extra or {}),
            "trials": {t.id: t.settings for t in trials}}
    atomic_write(out / "sweep.json", lambda f: f.write(json.dumps(info, indent=1, default=list).encode()))


def _run_grid(args, axes, configs, again, device, out, data, log):
    """The grid (or --random's samples of it), without Optuna."""
    shared = {"dataset": args.dataset, "val_split": args.val_split, "checkpoint_every": args.checkpoint_every}
    trials = make_trials(configs, shared, data.features, data.classes)
    _check_sizes(trials, args, data)
    results = out / "results.csv"
    _write_meta(out, again, args, data, trials)
    rows = read_rows(results)
    pending = []
    for t in trials:
        folder = out / "trials" / t.id
        if (folder / "metrics.json").exists():
            if rows.get(t.id, {}).get("status") != "ok":  # finished after the last row was written
                append_row(results, trial_row(t, folder, {"status": "ok"}))
        else:
            pending.append(t)
    log(f"sweep of {len(trials)} trials in {out}: {len(trials) - len(pending)} finished before, {len(pending)} to run")
    log(f"validation: {args.val_split:g} of the training set, held out as 'fastmlp train --val-split "
        f"{args.val_split:g}' does; the test set is evaluated for the best trial only")
    if pending:
        try:
            _run_pending(args, device, out, data, trials, pending, [a.dest for a in axes if a.varies], log)
        except KeyboardInterrupt:
            done = sum((out / "trials" / t.id / "metrics.json").exists() for t in trials)
            log(f"interrupted: {done} of {len(trials)} trials finished (rows in {results}); continue with: {again}")
            print("fastmlp: interrupted", file=sys.stderr)
            return 130
    from .sweep_report import report

    return report(out, trials, axes, data, log)


def _run_pending(args, device, out, data, trials, pending, varied, log):
    from distributed import as_completed
    from tqdm.auto import tqdm

    from .cluster import open_client, trial_task
    from .trial import check_worker

    actions = _train_actions()
    place = {seed: data.split(out, seed) for seed in sorted({t.settings["seed"] for t in pending})}
    for t in pending:
        _write_trial_json(out / "trials" / t.id, t, args, actions)
    with open_client(device, args.workers, args.scheduler, args.scheduler_file) as (client, where, gpu_per_worker):
        log(f"running {len(pending)} trial{'s' if len(pending) != 1 else ''} on {where}, device {device}")
        _check_workers(client, check_worker, out / "sweep.json")
        token = uuid.uuid4().hex[:8]  # keys unique to this run, even on a long-lived cluster
        futures, trial_of = [], {}
        for t in pending:
            fut = client.submit(trial_task, str(out / "trials" / t.id), t.settings, place[t.settings["seed"]],
                                device, gpu_per_worker, key=f"fastmlp-trial-{t.id}-{token}", pure=False)
            futures.append(fut)
            trial_of[fut.key] = t
        with tqdm(total=len(trials), initial=len(trials) - len(pending), unit="trial", desc="sweep",
                  disable=None) as bar:
            for fut in as_completed(futures):
                t = trial_of[fut.key]
                row = trial_row(t, out / "trials" / t.id, _outcome(fut))
                append_row(out / "results.csv", row)
                bar.update(1)
                bar.write(f"trial {t.id} {_what(row, varied, actions)}: {_result_text(row)}")


def _what(row, varied, actions):
    return " ".join(f"{actions[d].option_strings[0][2:]}={row[d]}" for d in varied)


def _result_text(row):
    if row["status"] == "failed":
        return f"FAILED: {row['error']}"
    text = (f"val acc {100 * float(row['val_acc']):.2f}% in {float(row['train_seconds']):.1f} s"
            + (f" (+ {float(row['startup_seconds']):.1f} s start-up)" if row.get("startup_seconds") not in (None, "")
               else ""))
    if row["status"] == "pruned":
        text = f"pruned after epoch {row['epochs_done']}, {text}: {row['pruned_reason']}"
    return text


def _outcome(future):
    """{'status', 'error'} of a finished Dask future, whether the trial failed or its task did."""
    if future.status == "finished":
        return future.result()
    exc = future.exception()
    return {"status": "failed", "error": " ".join(f"{type(exc).__name__}: {exc}".split())}


def _check_workers(client, check, sweep_file):
    """Every worker must import this fastmlp and see the sweep folder at the same path."""
    from . import __version__

    try:
        seen = client.run(check, str(sweep_file))
    except ImportError as exc:
        raise FastMLPError(f"the Dask workers cannot import fastmlp ({exc}); install fastmlp on every worker") from None
    blind = [w for w, (_, ok) in seen.items() if not ok]
    if blind:
        raise FastMLPError(f"{len(blind)} Dask worker(s), e.g. {blind[0]}, cannot see {sweep_file}: --out must be "
                           "a folder every worker reads and writes at the same path (a shared filesystem)")
    other = {v for v, _ in seen.values()} - {__version__}
    if other:
        raise FastMLPError(f"the Dask workers run fastmlp {', '.join(sorted(other))}, this is {__version__}; "
                           "install the same version everywhere")


def _write_trial_json(folder, trial, args, actions):
    command = ["fastmlp", "train", "--dataset", args.dataset, *(["--data-dir", args.data_dir] if args.data_dir else []),
               "--val-split", f"{args.val_split:g}", *trial.flags(actions)]
    info = {"trial": trial.id, "settings": trial.settings, "train_command": shlex.join(command),
            "note": "this trial's 'test' files are the validation split of its seed (data/ in the sweep folder); "
                    "train_command repeats it on the full data with the same split"}
    atomic_write(folder / "trial.json", lambda f: f.write(json.dumps(info, indent=1).encode()))
