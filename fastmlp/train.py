"""``python -m fastmlp.train``: train an MLP on MNIST-style data and write the results.

Exit status: 0 on success (also when ``--resume`` finds the run finished),
2 for usage errors (argparse's convention), 1 for any other error (one line on
stderr; ``--debug`` shows the traceback), 130 / 143 / 129 when SIGINT (Ctrl-C)
/ SIGTERM / SIGHUP stopped the run (after one line naming the checkpoint on disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from types import SimpleNamespace

import numpy as np

from . import presets
from .errors import ConfigError, DataError, DivergenceError, FastMLPError, one_line
from .interrupts import Interrupted, deferred, signals_raise
from .optim import SCHEDULES

DEFAULTS = presets.DEFAULT


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or (kind is float and not np.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _non_negative(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} >= 0, got {text!r}") from None
        if not value >= 0 or (kind is float and not np.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}" if kind is float else f"must be >= 0, got {text}")
        return value

    return parse


def _fraction(text):
    value = _non_negative(float)(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _ints(text, example):
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like {example}, got {text!r}") from None


def _sizes(text):
    sizes = _ints(text, "784,128,64,10")
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"need at least two positive sizes like 784,128,64,10, got {text!r}")
    return sizes


def _hidden(text):
    sizes = _ints(text, "256,128")
    if min(sizes, default=1) < 1:
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _accuracy(text):
    value = _positive(float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"is a fraction in (0, 1], like 0.98; got {text}")
    return value


def build_parser(prog="python -m fastmlp.train"):
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a multilayer perceptron on MNIST-style data on the CPU or a CUDA GPU.",
        formatter_class=argparse.HelpFormatter,  # each help string states its own default, once
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"], help="which dataset (default: %(default)s)")
    g.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four IDX files (.gz or raw) or a Kaggle train.csv "
        "(default: $FASTMLP_DATA_DIR, then the cache, downloading into it)",
    )
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    g.add_argument("--val-split", type=_fraction, default=0.0, help="fraction of the training set held out for validation (default: %(default)s)")
    g = p.add_argument_group("recipe")
    g.add_argument("--preset", default="default", choices=list(presets.PRESETS),
                   help="a measured recipe (fastmlp/presets.py) whose values become the defaults of the flags "
                        "below; flags given still win (default: %(default)s)")
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=_hidden, default=d["hidden"],
                   help=f"hidden layer sizes, e.g. 256,128; --sizes wins (default: {','.join(map(str, d['hidden']))})")
    g.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="layer sizes including input and output, e.g. 784,128,64,10 (default: features,--hidden,classes)",
    )
    g.add_argument("--activation", default=d["activation"], choices=["relu", "sigmoid", "tanh"],
                   help="hidden-layer activation (default: %(default)s)")
    g.add_argument("--init", default=None, choices=["he", "xavier", "normal"], help="weight initialisation (default: he for relu, xavier otherwise)")
    g.add_argument("--init-std", type=_positive(float), default=0.01, help="std of --init normal (default: %(default)s)")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="precision of the weights and of training (default: %(default)s)")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", default=d["optimizer"], choices=["sgd", "momentum", "nesterov", "adam"],
                   help="optimiser (default: %(default)s)")
    g.add_argument("--lr", type=_positive(float), default=d["lr"], help="(peak) learning rate (default: %(default)s)")
    g.add_argument("--momentum", type=_fraction, default=d["momentum"], help="for momentum / nesterov (default: %(default)s)")
    g.add_argument("--weight-decay", type=_non_negative(float), default=d["weight_decay"], help="L2 penalty on weights (default: %(default)s)")
    g.add_argument("--schedule", default=d["schedule"], choices=list(SCHEDULES),
                   help="learning-rate schedule (default: %(default)s)")
    g.add_argument("--warmup", type=_non_negative(float), default=d["warmup"],
                   help="epochs of linear learning-rate warm-up (a fraction is fine); for onecycle, its rising part "
                        "(default: %(default)s)")
    g.add_argument("--dropout", type=_fraction, default=d["dropout"],
                   help="drop probability of hidden units in training (default: %(default)s)")
    g.add_argument("--label-smoothing", type=_fraction, default=d["label_smoothing"],
                   help="train on (1 - eps) one-hot + eps / classes (default: %(default)s)")
    g.add_argument("--target-accuracy", type=_accuracy, default=None, metavar="A",
                   help="stop once the validation accuracy (the test accuracy without --val-split) reaches A, "
                        "e.g. 0.98 (default: train all --epochs)")
    g.add_argument("--eval-every", type=_positive(int), default=None, metavar="STEPS",
                   help="with --target-accuracy: also check every STEPS steps (default: after each epoch only)")
    g.add_argument("--batch-size", type=_positive(int), default=d["batch_size"], help="mini-batch size (default: %(default)s)")
    g.add_argument("--epochs", type=_positive(int), default=d["epochs"], help="epochs to train (default: %(default)s)")
    g.add_argument("--seed", type=_non_negative(int), default=d["seed"],
                   help="seed of the initial weights, the shuffles and the validation split (default: %(default)s)")
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: $FASTMLP_DEVICE, else cpu)")
    g.add_argument("--cuda-graph", default="auto", choices=["auto", "on", "off"],
                   help="on a GPU, replay each step as a CUDA graph: auto uses graphs when capture works and "
                        "says why not otherwise, on fails if it cannot, off launches kernel by kernel (default: %(default)s)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="output folder (default: a new runs/<dataset>-<time>)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run that --out holds (its checkpoint, model, metrics and plots)")
    g.add_argument("--checkpoint-every", type=_non_negative(int), default=1,
                   help="write checkpoint.npz into the output folder every N epochs (0: never) (default: %(default)s)")
    g.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run whose output folder is DIR from its last complete checkpoint, "
                   "on the data it recorded (or --data-dir) and with its own settings (default: start a new run)")
    g.add_argument("--allow-other-data", action="store_true",
                   help="with --resume: continue even if the data's fingerprint differs from the run's")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    g.add_argument("--verbose", action="store_true", help="also name the BLAS, its kernels and threads")
    g.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def split_validation(x, y, fraction, seed):
    """Hold out ``fraction`` of the rows (a seeded shuffle) as a validation set."""
    if not fraction:
        return x, y, None, None
    n_val = int(round(len(x) * fraction))
    if not 0 < n_val < len(x):
        raise ConfigError(f"--val-split {fraction} leaves {n_val} of {len(x)} rows for validation; choose a fraction that keeps both parts non-empty")
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


# What a checkpoint remembers of the command line: everything that decides the
# result. The data location, device and output flags come from the resuming command.
TRAINING_SETTINGS = (
    "dataset", "val_split", "sizes", "activation", "init", "init_std", "dtype", "optimizer", "lr",
    "momentum", "weight_decay", "schedule", "batch_size", "epochs", "seed", "checkpoint_every",
    "preset", "warmup", "dropout", "label_smoothing", "target_accuracy", "eval_every",
)
# What the recipe settings were before a checkpoint recorded them: the run trained
# without them (and its other settings are those of today's 'classic' preset).
_UNRECORDED = {"preset": "classic", "warmup": 0.0, "dropout": 0.0, "label_smoothing": 0.0,
               "target_accuracy": None, "eval_every": None}
# Copies of the parameters a training run holds: parameters, gradients, two
# optimiser states and the host copy written to the checkpoint.
_TRAINING_COPIES = 5


def parse_args(parser, argv=None):
    """``parser.parse_args`` with the values of the chosen ``--preset`` as the defaults."""
    chosen, _ = parser.parse_known_args(argv)
    parser.set_defaults(**presets.preset(chosen.preset))
    return parser.parse_args(argv)


def recipe_lines(args, log):
    """The run's recipe: the preset and the flags it stands for, and what was changed."""
    values = presets.preset(args.preset)
    log(f"preset {args.preset}: {presets.as_flags(values)}")
    changed = {k: getattr(args, k) for k, v in values.items() if getattr(args, k) != v}
    if changed:
        log(f"changed from the preset: {presets.as_flags(changed)}")


def given_flags(argv=None):
    """{dest: value} of the options given on the command line (defaults left out)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def _parse_like(action, value):
    """A setting read from a checkpoint's JSON, checked and converted as the command line would."""
    if value is None and action.default is None:
        return None
    if isinstance(value, (bool, dict)):
        raise ValueError(value)
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    out = action.type(text) if action.type else text
    if action.choices is not None and out not in action.choices:
        raise ValueError(out)
    return out


def checkpoint_settings(saved, path):
    """The TRAINING_SETTINGS a checkpoint holds, validated like command-line flags."""
    actions = {a.dest: a for a in build_parser()._actions}
    settings, bad = {}, []
    for key in TRAINING_SETTINGS:
        try:
            settings[key] = _UNRECORDED[key] if key in _UNRECORDED and key not in saved else \
                _parse_like(actions[key], saved[key])
        except (KeyError, argparse.ArgumentTypeError, ValueError, TypeError):
            bad.append(key)
    if bad:
        raise DataError(f"{path}: the settings {', '.join(bad)} are missing or malformed; it was not written by this command")
    return settings


def _flag(key, value):
    shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return f"--{key.replace('_', '-')} {shown}"


def _check_resume_flags(args, given, settings, out):
    for flag in ("out", "overwrite"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag} cannot be used with --resume: the run continues in its own folder {out}")
    conflicts = [key for key in TRAINING_SETTINGS if key in given and given[key] != settings[key]]
    if conflicts:
        raise ConfigError(
            f"{', '.join(_flag(k, given[k]) for k in conflicts)}: the run in {out} has "
            f"{', '.join(_flag(k, settings[k]) for k in conflicts)}, and a resumed run keeps its settings; "
            "leave these flags out, or start a new run with --out"
        )


def _data_record(ck, data_dir, path):
    """(the data_dir to load, the checkpoint's record of its data or None); ``data_dir``
    (--data-dir) overrides the recorded location."""
    record = ck["data"]
    if record is None:
        if data_dir is None:
            raise ConfigError(
                f"{path} does not record where its data came from (an older fastmlp wrote it); "
                "pass --data-dir with the data it trained on"
            )
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


def run(args, log=print, given=None, warn=None):
    """Train as ``args`` say (or continue the run in ``args.resume``); returns
    (model, history, out_dir). ``given`` holds the flags given on the command line
    (see :func:`given_flags`): with ``--resume``, those that differ from the run's
    settings are an error. ``warn`` prints one line to the user."""
    from . import io
    from .backend import get_backend
    from .runfolder import RunFolder

    given = given or {}
    warn = warn or (lambda text: print(text, file=sys.stderr))
    backend = get_backend(args.device)
    if args.sizes:
        io.check_fits(args.sizes, args.dtype, _TRAINING_COPIES, ConfigError, "choose smaller --sizes")
    state = SimpleNamespace(saved=None)  # the epoch of the checkpoint on disk, for the interrupt report
    folder = None
    try:
        if args.resume:
            folder = RunFolder.resume(args.resume, warn)
        else:
            folder = RunFolder.new(args.out, args.dataset, args.overwrite, warn)
        return _run_in(folder.path, args, given, backend, state, log)
    except Interrupted as stop:
        if state.saved is None:
            where = "no checkpoint was written, so there is nothing to resume"
        else:
            command = [sys.executable, "-m", "fastmlp.train", "--resume", str(folder.path)]
            if args.device:
                command += ["--device", args.device]
            where = f"the checkpoint of epoch {state.saved} is in {folder.path}; continue with: {shlex.join(command)}"
        warn(f"fastmlp: stopped by {stop.name}; {where}")
        raise
    finally:
        if folder is not None:
            folder.close()


def _run_in(out, args, given, backend, state, log):
    from . import io, plots
    from .checkpoint import NAME, load_checkpoint, restore, save_checkpoint
    from .data import load_dataset
    from .model import MLP
    from .trainer import Trainer

    resumed, record, data_dir = None, None, args.data_dir
    if args.resume:
        if not (out / NAME).is_file():
            raise DataError(f"{out / NAME}: no such checkpoint; --resume takes the output folder of an earlier run, which holds {NAME}")
        resumed = load_checkpoint(out / NAME, device=backend)
        ck = resumed[1]
        settings = checkpoint_settings(ck["settings"], out / NAME)
        _check_resume_flags(args, given, settings, out)
        vars(args).update(settings)
        state.saved = ck["epochs_done"]
        target = ck["history"].get("target") or {}
        if ((ck["epochs_done"] >= args.epochs or target.get("reached"))
                and all((out / f).is_file() for f in ("model.npz", "metrics.json"))):
            accuracy = next((a for a in reversed(ck["history"].get("test_acc", [])) if a is not None), None)
            log((f"the run in {out} finished all {args.epochs} epochs" if ck["epochs_done"] >= args.epochs else
                 f"the run in {out} reached its target accuracy after epoch {ck['epochs_done']}")
                + (f" (test accuracy {100 * accuracy:.2f}%)" if accuracy is not None else "")
                + "; nothing to do, nothing rewritten")
            return resumed[0], ck["history"], out
        data_dir, record = _data_record(ck, args.data_dir, out / NAME)

    t_load = time.perf_counter()
    # uint8 pixels: the trainer keeps them so on the device and scales each batch
    ds = load_dataset(args.dataset, data_dir=data_dir, download=not (args.no_download or args.resume), normalize=False)
    t_load = time.perf_counter() - t_load
    if record is not None and not args.allow_other_data:
        _check_same_data(ds, record, out)
    sizes = args.sizes or (ds.n_features, *args.hidden, ds.n_classes)
    if sizes[0] != ds.n_features:
        raise ConfigError(f"--sizes starts with {sizes[0]} but {args.dataset} rows have {ds.n_features} features; start --sizes with {ds.n_features}")
    if sizes[-1] != ds.n_classes:
        raise ConfigError(f"--sizes ends with {sizes[-1]} but {args.dataset} has {ds.n_classes} classes; end --sizes with {ds.n_classes}")
    args.sizes = tuple(sizes)
    x_tr, y_tr, x_val, y_val = split_validation(ds.x_train, ds.y_train, args.val_split, args.seed)

    if resumed:
        model = resumed[0]
        if model.sizes != tuple(sizes):
            raise ConfigError(f"checkpoint holds a {'-'.join(map(str, model.sizes))} model but the data needs {sizes}")
    else:
        model = MLP(sizes, args.activation, args.init, args.init_std, args.dtype, backend, seed=args.seed)
    model.class_names = list(ds.class_names)
    trainer = Trainer(model, **presets.trainer_kwargs(args), progress=not args.quiet,
                      log=log if not args.quiet else None, cuda_graph=args.cuda_graph)
    if resumed:
        restore(trainer, resumed[1], resumed[2], out / NAME)
        log(f"resuming {out} after epoch {trainer.epochs_done} of {args.epochs}")
    recipe_lines(args, log)
    if args.verbose:
        from .blas import describe

        log(f"BLAS: {describe()}")
    if not backend.is_gpu:
        from .blas import notice

        if notice():
            log(notice())
    log(f"device {backend.name}; data {ds.source} ({len(x_tr)} train, {len(ds.x_test)} test"
        + (f", {len(x_val)} validation" if x_val is not None else "") + f", loaded in {t_load:.1f} s)")
    log(f"model {'-'.join(map(str, sizes))} {args.activation} ({model.n_params:,} parameters, {model.dtype.name}); "
        f"{args.optimizer} lr {args.lr:g} {args.schedule}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}")

    settings = {k: getattr(args, k) for k in TRAINING_SETTINGS}
    data = {"dataset": ds.name, "location": ds.location, "files": dict(ds.files)}
    every = args.checkpoint_every

    def checkpoint(tr):
        stopping = (tr.history.get("target") or {}).get("reached")  # the last epoch of a run that reached its target
        if every and (tr.epochs_done % every == 0 or tr.epochs_done == args.epochs or stopping):
            with deferred():  # a signal now waits until the checkpoint on disk is the one recorded
                save_checkpoint(out / NAME, tr, settings, ds.class_names, data)
                state.saved = tr.epochs_done

    t0 = time.perf_counter()
    remaining = args.epochs - trainer.epochs_done
    # Overflow on the way to a diverging loss is reported by the DivergenceError
    # below, in one line; NumPy's own warnings would only come before it.
    with np.errstate(all="ignore"):
        try:
            if remaining > 0:
                trainer.fit(x_tr, y_tr, remaining, X_test=ds.x_test, y_test=ds.y_test, X_val=x_val, y_val=y_val,
                            total_epochs=args.epochs, on_epoch=checkpoint)
        except DivergenceError as exc:
            if state.saved:
                raise DivergenceError(f"{exc}; the checkpoint of epoch {state.saved} in {out} is intact") from None
            raise
        history = trainer.history
        total = time.perf_counter() - t0
        y_pred = model.predict(ds.x_test)
    test_acc = float((y_pred == ds.y_test).mean())
    io.save(model, out / "model.npz", class_names=ds.class_names)
    metrics = {
        "dataset": args.dataset,
        "data_source": ds.source,
        "data": data,
        "device": backend.name,
        "cuda_graph": trainer.graph_info,
        "sizes": list(sizes),
        "settings": {k: v for k, v in vars(args).items() if k not in ("quiet", "debug", "no_plots")},
        "test_accuracy": test_acc,
        "train_seconds": total,
        "epochs": [
            {k: history[k][i] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "epoch_time", "samples_per_s", "lr")}
            for i in range(len(history["epoch"]))
        ],
        "iter_loss": history["iter_loss"],
        "steps_per_epoch": history["steps_per_epoch"],
        "preset": {"name": args.preset, "flags": presets.as_flags(presets.preset(args.preset))},
        "target": history.get("target"),
    }
    io.atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(metrics, indent=1, default=str).encode()))
    written = ["model.npz", "metrics.json"] + ([NAME] if every else [])
    if not args.no_plots:
        title = f"{args.dataset} {'-'.join(map(str, sizes))} {args.activation} on {backend.name}"
        plots.plot_history(history, out / "history.png", title=title)
        plots.plot_confusion(ds.y_test, y_pred, ds.class_names, out / "confusion.png", title=f"{args.dataset} test set")
        plots.plot_samples(ds.x_test, ds.y_test, y_pred, ds.class_names, out / "samples.png", title=f"{args.dataset} test images: true → predicted")
        written += ["history.png", "confusion.png", "samples.png"]
    done = trainer.epochs_done
    log(f"test accuracy {100 * test_acc:.2f}% after {done} epoch{'s' if done != 1 else ''} in {total:.1f} s on {backend.name}")
    log(f"wrote {', '.join(written)} to {out}")
    return model, history, out


class _Stdout:
    """``log`` for the CLI: one line to stdout. If stdout stops taking lines (a closed
    pipe such as ``| head -1``, a full device), the run goes on without them, says so
    once on stderr, and stdout is pointed at /dev/null so that Python's final flush
    cannot fail either."""

    def __init__(self):
        self.ok = True

    def __call__(self, text):
        if not self.ok:
            return
        try:
            print(text, flush=True)
        except OSError as exc:
            self.ok = False
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            _stderr(f"fastmlp: cannot write to stdout ({exc.strerror or exc}); the run goes on without its progress lines")


def _stderr(text):
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def main(argv=None, prog="python -m fastmlp.train"):
    """Run the trainer with command-line ``argv``; returns the exit status. ``prog``:
    the command's name in usage and error lines (``fastmlp train`` from the CLI)."""
    parser = build_parser(prog)
    args = parse_args(parser, argv)
    try:
        with signals_raise():
            run(args, log=_Stdout(), given=given_flags(argv), warn=_stderr)
    except Interrupted as stop:
        return stop.exit_code
    except FastMLPError as exc:
        if args.debug:
            raise
        _stderr(f"fastmlp: error: {exc}")
        return 1
    except MemoryError as exc:
        if args.debug:
            raise
        _stderr(f"fastmlp: error: ran out of memory ({one_line(exc) or 'no details'}); try smaller --sizes or --batch-size")
        return 1
    except Exception as exc:
        if args.debug:
            raise
        _stderr(f"fastmlp: error: unexpected {type(exc).__name__} ({one_line(exc)}); this is a bug in fastmlp: "
                "run again with --debug and report the traceback")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
