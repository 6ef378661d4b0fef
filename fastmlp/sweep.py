"""``fastmlp sweep``: train many configurations with ``fastmlp train`` on Dask, keep the best.

    fastmlp sweep --lr 0.01,0.05,0.1 --sizes 784,128,10 784,256,64,10 --optimizer momentum,adam --seed 0,1,2

Every flag of ``train`` that decides the result takes several values: a list
``a,b,c`` (for ``--sizes``, values separated by spaces), a range
``START:STOP:N`` (N evenly spaced values, both ends included) or
``START:STOP:logN`` (N log-spaced values). The trials are the grid of all
combinations or, with ``--random N``, N samples of it; a range without a count
is then sampled continuously (log-uniformly for ``START:STOP:log``).

Trials are compared on validation accuracy: each trains on the rows that
``fastmlp train --val-split V --seed S`` trains on and is scored on the rows it
holds out (see :mod:`fastmlp.trial`). The test set is evaluated once, for the
best trial only. The output folder holds:

- ``results.csv``: one row per trial, appended the moment it finishes;
- ``trials/<id>/``: what ``train`` writes (checkpoint.npz, model.npz,
  metrics.json), its console output (train.log) and trial.json, with the
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

from . import train
from .backend import parse_device
from .errors import ConfigError, FastMLPError
from .io import atomic_write

# Settings every trial shares (the data, how much of it validates, the checkpoint
# cadence); every other setting of train can take several values.
SHARED = ("dataset", "val_split", "checkpoint_every")
# --preset only sets the defaults of other flags: a trial passes every varied
# setting as a flag, so the preset would decide nothing (sweep those flags instead).
NOT_SWEPT = ("preset",)
VARIED = tuple(k for k in train.TRAINING_SETTINGS if k not in SHARED + NOT_SWEPT)
# What decides a trial's result, and so its identity: a rerun finds its folder by these.
IDENTITY = tuple(k for k in train.TRAINING_SETTINGS if k not in ("checkpoint_every", *NOT_SWEPT))
RESULT_COLUMNS = ("trial", "status", "val_acc", "train_acc", "train_loss", "train_seconds", *IDENTITY, "device", "error")
DEFAULT_VAL_SPLIT = 0.1
TABLE_ROWS = 20  # trials shown in the final table; results.csv has them all
RANGE_HELP = "START:STOP:N or START:STOP:logN, e.g. 1e-3:1e-1:log5"
EPILOG = """\
Values: a list a,b,c (--sizes: values separated by spaces), or a range
START:STOP:N (N evenly spaced values, both ends included) or START:STOP:logN
(N log-spaced values). The trials are the grid of all combinations; with
--random N, N samples of it, where a range without a count (START:STOP or
START:STOP:log) is sampled continuously.

Trials are compared on validation accuracy; the test set is evaluated for the
best trial only. Running the same command on the same --out again skips the
finished trials.

Example: fastmlp sweep --lr 1e-3:1e-1:log5 --optimizer momentum,adam --seed 0,1 --epochs 10
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
    """train's argparse actions by setting name; the sweep's flags are made from them."""
    return {a.dest: a for a in train.build_parser()._actions}


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
        if dest == "sizes":
            note = "several values separated by spaces"
        else:
            note = f"several values: a,b,c{' or a range START:STOP:N' if _number_kind(a) else ''}"
        g.add_argument(*a.option_strings, nargs="+", metavar="V", help=_help(a, a.default, note))
    g.add_argument("--random", type=train._positive(int), metavar="N",
                   help="train N samples of the grid instead of all of it (default: the whole grid)")
    g.add_argument("--random-seed", type=int, default=0, metavar="S", help="seed of --random's samples (default: %(default)s)")
    g = p.add_argument_group("shared by every trial")
    for dest in ("dataset", "data_dir", "no_download", "val_split", "checkpoint_every"):
        a = actions[dest]
        default = DEFAULT_VAL_SPLIT if dest == "val_split" else a.default
        kind = {"action": "store_true"} if a.nargs == 0 else {"type": a.type, "choices": a.choices, "metavar": a.metavar}
        g.add_argument(*a.option_strings, default=default, help=_help(a, default), **kind)
    g = p.add_argument_group("where the trials run")
    g.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="cpu, or cuda for one GPU per trial (default: $FASTMLP_DEVICE, else cpu)")
    g.add_argument("--workers", type=train._positive(int), metavar="N",
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
                            "(or sample it continuously with --random N)")
        return low, high, log
    n = int(digits)
    if n < 1:
        raise SpecError(f"{flag}: the range {text!r} asks for {n} values; give a count >= 1")
    points = np.geomspace(low, high, n) if log else np.linspace(low, high, n)
    return [_number(action, x) for x in points]


def parse_axis(action, tokens, sampling):
    """The values the tokens given to one flag stand for."""
    flag = action.option_strings[0]
    pieces = tokens if action.dest == "sizes" else [p for t in tokens for p in t.split(",")]
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


def parse_spec(args):
    """The axes the command line sweeps over (flags not given are left to train's defaults)."""
    actions = _train_actions()
    axes = [parse_axis(actions[d], getattr(args, d), args.random is not None)
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
    settings: dict  # every setting in IDENTITY

    def flags(self, actions):
        """The train flags of the varied settings, in train's order."""
        argv = []
        for dest in VARIED:
            value = self.settings[dest]
            if value is not None:
                argv += [actions[dest].option_strings[0], _format(value)]
        return argv


def _format(value):
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def make_trials(configs, shared, defaults):
    """Trial objects (each configuration once), named by a hash of their settings."""
    trials = {}
    for config in configs:
        settings = {**defaults, **config, **shared}
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
        key = json.dumps({k: settings[k] for k in IDENTITY}, sort_keys=True)
        tid = hashlib.sha256(key.encode()).hexdigest()[:10]
        trials.setdefault(tid, Trial(tid, settings))
    return list(trials.values())


# --------------------------------------------------------------------------
# The results table
# --------------------------------------------------------------------------


def append_row(path, row):
    """Append one row to results.csv (header first if new), on disk before it returns."""
    new = not path.exists() or path.stat().st_size == 0
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
    """The results row of a trial from its metrics.json (or its failure)."""
    row = {k: _format(v) if v is not None else "" for k, v in trial.settings.items()}
    row.update(trial=trial.id, status=outcome["status"], error=outcome.get("error", ""))
    if outcome["status"] == "ok":
        m = json.loads((folder / "metrics.json").read_text())
        last = m["epochs"][-1]
        # the trial's "test" files are the sweep's validation split (see fastmlp.trial)
        row.update(val_acc=m["test_accuracy"], train_acc=last["train_acc"], train_loss=last["train_loss"],
                   train_seconds=m["train_seconds"], device=m["device"])
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
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before any trial started (while loading the data, say)
        print("fastmlp: interrupted", file=sys.stderr)
        return 130


def run_sweep(args, axes, configs, argv, log=print):
    """Run every trial not finished yet, then report; returns the exit status."""
    from .data import load_dataset

    device, _ = parse_device(args.device or os.environ.get("FASTMLP_DEVICE") or "cpu")
    out = Path(args.out or Path("sweeps") / f"{args.dataset}-{_dt.datetime.now():%Y%m%d-%H%M%S}").resolve()
    again = shlex.join(["fastmlp", "sweep", *argv, *([] if args.out else ["--out", str(out)])])
    ds = load_dataset(args.dataset, data_dir=args.data_dir, normalize=False, flatten=False,
                      download=not args.no_download)
    if ds.name == "csv":
        raise ConfigError(f"{ds.source} is a CSV data set; fastmlp sweep reads IDX data sets (mnist, fashion-mnist)")
    features, classes = int(np.prod(ds.x_train.shape[1:])), len(ds.class_names)
    actions = _train_actions()
    defaults = {d: actions[d].default for d in VARIED} | {"sizes": (features, *train.DEFAULTS["hidden"], classes)}
    trials = make_trials(configs, {"dataset": args.dataset, "val_split": args.val_split}, defaults)
    for t in trials:
        sizes = t.settings["sizes"]
        if sizes[0] != features or sizes[-1] != classes:
            raise ConfigError(f"--sizes {_format(sizes)} does not fit {args.dataset}: start with its {features} "
                              f"features and end with its {classes} classes")

    results = out / "results.csv"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "sweep.json", lambda f: f.write(json.dumps(
        {"command": again, "trials": {t.id: t.settings for t in trials}}, indent=1).encode()))
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
            _run_pending(args, device, out, ds, trials, pending, [a.dest for a in axes if a.varies], log)
        except KeyboardInterrupt:
            done = sum((out / "trials" / t.id / "metrics.json").exists() for t in trials)
            log(f"interrupted: {done} of {len(trials)} trials finished (rows in {results}); continue with: {again}")
            print("fastmlp: interrupted", file=sys.stderr)
            return 130
    return report(out, trials, axes, ds, log)


def _run_pending(args, device, out, ds, trials, pending, varied, log):
    from distributed import as_completed
    from tqdm.auto import tqdm

    from .cluster import open_client, trial_task
    from .trial import TEST_KILL_ENV, check_worker, split_folder, write_split

    actions = _train_actions()
    place = {}
    for seed in sorted({t.settings["seed"] for t in pending}):
        folder = split_folder(out / "data", args.dataset, args.val_split, seed)
        place[seed] = str(write_split(folder, ds.x_train, ds.y_train, args.val_split, seed))
    for t in pending:
        _write_trial_json(out / "trials" / t.id, t, args, actions)
    shared = ["--dataset", args.dataset, "--val-split", "0", "--checkpoint-every", str(args.checkpoint_every)]
    kill_marker = os.environ.get(TEST_KILL_ENV)
    with open_client(device, args.workers, args.scheduler, args.scheduler_file) as (client, where, gpu_per_worker):
        log(f"running {len(pending)} trial{'s' if len(pending) != 1 else ''} on {where}, device {device}")
        _check_workers(client, check_worker, out / "sweep.json")
        token = uuid.uuid4().hex[:8]  # keys unique to this run, even on a long-lived cluster
        futures, trial_of = [], {}
        for t in pending:
            where_argv = ["--data-dir", place[t.settings["seed"]], "--no-download", "--no-plots", "--quiet"]
            if not gpu_per_worker:
                where_argv += ["--device", device]
            fut = client.submit(trial_task, str(out / "trials" / t.id), [*shared, *t.flags(actions)], where_argv,
                                gpu_per_worker, kill_marker, key=f"fastmlp-trial-{t.id}-{token}", pure=False)
            futures.append(fut)
            trial_of[fut.key] = t
        with tqdm(total=len(trials), initial=len(trials) - len(pending), unit="trial", desc="sweep",
                  disable=None) as bar:
            for fut in as_completed(futures):
                t = trial_of[fut.key]
                row = trial_row(t, out / "trials" / t.id, _outcome(fut))
                append_row(out / "results.csv", row)
                bar.update(1)
                what = " ".join(f"{actions[d].option_strings[0][2:]}={row[d]}" for d in varied)
                result = (f"val acc {100 * float(row['val_acc']):.2f}% in {float(row['train_seconds']):.1f} s"
                          if row["status"] == "ok" else f"FAILED: {row['error']}")
                bar.write(f"trial {t.id} {what}: {result}")


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


# --------------------------------------------------------------------------
# The end: sorted table, plot, best model and its test accuracy
# --------------------------------------------------------------------------


def report(out, trials, axes, ds, log=print):
    rows = read_rows(out / "results.csv")
    rows = [rows[t.id] for t in trials if t.id in rows]
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -float(r["val_acc"]))
    failed = [r for r in rows if r["status"] != "ok"]
    actions = _train_actions()
    varied = [a.dest for a in axes if a.varies]
    header = ["rank", "val acc", "train s", *(actions[d].option_strings[0][2:] for d in varied), "trial"]
    table = [[str(i + 1), f"{100 * float(r['val_acc']):.2f}%", f"{float(r['train_seconds']):.1f}",
              *(r[d] for d in varied), r["trial"]] for i, r in enumerate(ok[:TABLE_ROWS])]
    table += [["-", "failed", "-", *(r[d] for d in varied), f"{r['trial']}: {r['error']}"] for r in failed[:TABLE_ROWS]]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        log("  ".join(cell.rjust(w) if i < 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    if len(ok) > TABLE_ROWS or len(failed) > TABLE_ROWS:
        log(f"(the best {TABLE_ROWS} and the first {TABLE_ROWS} failed trials shown; all {len(rows)} are in results.csv)")
    if not ok:
        raise FastMLPError(f"all {len(failed)} trials failed; the first: {failed[0]['error']}" if failed
                           else "no trial finished")
    best = ok[0]
    plot_sweep(ok, best, out / "sweep.png", title=f"{ds.name}: {len(ok)} trials")
    model_file = out / "trials" / best["trial"] / "model.npz"
    atomic_write(out / "best-model.npz", lambda f: f.write(model_file.read_bytes()))
    test_acc = _test_accuracy(out / "best-model.npz", ds)
    info = {"trial": best["trial"], "settings": next(t.settings for t in trials if t.id == best["trial"]),
            "val_acc": float(best["val_acc"]), "test_acc": test_acc, "train_seconds": float(best["train_seconds"]),
            "test_note": "the test set was evaluated for this trial only; trials were compared on validation accuracy"}
    atomic_write(out / "best.json", lambda f: f.write(json.dumps(info, indent=1).encode()))
    log(f"best: trial {best['trial']}, validation accuracy {100 * info['val_acc']:.2f}%; test accuracy "
        f"{100 * test_acc:.2f}% (the test set was evaluated for this trial only)")
    log(f"wrote results.csv, sweep.png, best-model.npz and best.json to {out}"
        + (f"; {len(failed)} trial(s) failed" if failed else ""))
    return 0


def _test_accuracy(model_file, ds):
    """Accuracy of a saved model on the test set of ``ds`` (uint8 images, which the model
    scales as train's gather kernel does)."""
    from .io import load

    x = ds.x_test.reshape(len(ds.x_test), -1)
    return float((load(model_file).predict(x) == ds.y_test).mean())


def plot_sweep(rows, best, path, title):
    """Validation accuracy against training time, one point per trial, the best one starred."""
    from .plots import _new_figure, _save_atomic

    fig = _new_figure((6.4, 4.2))
    ax = fig.add_subplot()
    seconds = [float(r["train_seconds"]) for r in rows]
    acc = [100 * float(r["val_acc"]) for r in rows]
    ax.scatter(seconds, acc, s=22, color="#1f77b4", label="trial")
    ax.scatter([float(best["train_seconds"])], [100 * float(best["val_acc"])], marker="*", s=260, color="#d62728",
               zorder=3, label=f"best: {best['trial']} ({100 * float(best['val_acc']):.2f}%)")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _save_atomic(fig, str(path))
