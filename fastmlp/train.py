"""``python -m fastmlp.train``: train an MLP on MNIST-style data and write the results.

Exit status: 0 on success, 2 for usage errors (argparse's convention), 1 for
any other expected error (one line on stderr; ``--debug`` shows the traceback),
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import presets
from .errors import ConfigError, DivergenceError, FastMLPError
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
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
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


def build_parser():
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog="python -m fastmlp.train",
        description="Train a multilayer perceptron on MNIST-style data on the CPU or a CUDA GPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"], help="which dataset")
    g.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four IDX files (.gz or raw) or a Kaggle train.csv; "
        "default: $FASTMLP_DATA_DIR, then the cache (downloading into it)",
    )
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    g.add_argument("--val-split", type=_fraction, default=0.0, help="fraction of the training set held out for validation")
    g = p.add_argument_group("recipe")
    g.add_argument("--preset", default="default", choices=list(presets.PRESETS),
                   help="a measured recipe (fastmlp/presets.py) whose values become the defaults of the flags below; "
                        "flags given still win")
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=_hidden, default=d["hidden"], help="hidden layer sizes, e.g. 256,128 (--sizes wins)")
    g.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="layer sizes including input and output, e.g. 784,128,64,10 "
        f"(default: features,{','.join(map(str, d['hidden']))},classes)",
    )
    g.add_argument("--activation", default=d["activation"], choices=["relu", "sigmoid", "tanh"])
    g.add_argument("--init", default=None, choices=["he", "xavier", "normal"], help="default: he for relu, xavier otherwise")
    g.add_argument("--init-std", type=_positive(float), default=0.01, help="std of --init normal")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", default=d["optimizer"], choices=["sgd", "momentum", "nesterov", "adam"])
    g.add_argument("--lr", type=_positive(float), default=d["lr"], help="(peak) learning rate")
    g.add_argument("--momentum", type=_fraction, default=d["momentum"], help="for momentum / nesterov")
    g.add_argument("--weight-decay", type=_non_negative(float), default=d["weight_decay"], help="L2 penalty on weights")
    g.add_argument("--schedule", default=d["schedule"], choices=list(SCHEDULES))
    g.add_argument("--warmup", type=_non_negative(float), default=d["warmup"],
                   help="epochs of linear learning-rate warm-up (a fraction is fine); for onecycle, its rising part")
    g.add_argument("--dropout", type=_fraction, default=d["dropout"], help="drop probability of hidden units in training")
    g.add_argument("--label-smoothing", type=_fraction, default=d["label_smoothing"],
                   help="train on (1 - eps) one-hot + eps / classes")
    g.add_argument("--target-accuracy", type=_accuracy, default=None, metavar="A",
                   help="stop once the validation accuracy (the test accuracy without --val-split) reaches A, e.g. 0.98")
    g.add_argument("--eval-every", type=_positive(int), default=None, metavar="STEPS",
                   help="with --target-accuracy: also check every STEPS steps, not only after each epoch")
    g.add_argument("--batch-size", type=_positive(int), default=d["batch_size"])
    g.add_argument("--epochs", type=_positive(int), default=d["epochs"])
    g.add_argument("--seed", type=int, default=d["seed"])
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: $FASTMLP_DEVICE, else cpu)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="output folder (default: runs/<dataset>-<time>)")
    g.add_argument("--checkpoint-every", type=_non_negative(int), default=1,
                   help="write checkpoint.npz into the output folder every N epochs (0: never)")
    g.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run whose output folder is DIR from its last complete checkpoint")
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
    "warmup", "dropout", "label_smoothing", "target_accuracy", "eval_every",
)


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


def run(args, log=print):
    """Train as ``args`` say (or continue the run in ``args.resume``); returns (model, history, out_dir)."""
    from . import io, plots
    from .backend import get_backend
    from .checkpoint import NAME, load_checkpoint, restore, save_checkpoint
    from .data import load_dataset
    from .model import MLP
    from .trainer import Trainer

    backend = get_backend(args.device)
    resumed = None
    if args.resume:
        out = Path(args.resume)
        resumed = load_checkpoint(out / NAME, device=backend)
        saved = resumed[1]["settings"]
        missing = [k for k in TRAINING_SETTINGS if k not in saved]
        if missing:
            raise ConfigError(f"{out / NAME} lacks the settings {', '.join(missing)}; it was not written by this command")
        for key in TRAINING_SETTINGS:
            setattr(args, key, tuple(saved[key]) if key == "sizes" else saved[key])
    else:
        out = Path(args.out) if args.out else Path("runs") / f"{args.dataset}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    _check_writable(out)

    t_load = time.perf_counter()
    # uint8 pixels: the trainer keeps them so on the device and scales each batch
    ds = load_dataset(args.dataset, data_dir=args.data_dir, download=not args.no_download, normalize=False)
    t_load = time.perf_counter() - t_load
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
    trainer = Trainer(model, **presets.trainer_kwargs(args), progress=not args.quiet, log=log if not args.quiet else None)
    if resumed:
        restore(trainer, resumed[1], resumed[2])
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
    every = args.checkpoint_every

    def checkpoint(tr):
        if every and (tr.epochs_done % every == 0 or tr.epochs_done == args.epochs):
            save_checkpoint(out / NAME, tr, settings, ds.class_names)

    t0 = time.perf_counter()
    remaining = args.epochs - trainer.epochs_done
    try:
        if remaining > 0:
            trainer.fit(x_tr, y_tr, remaining, X_test=ds.x_test, y_test=ds.y_test, X_val=x_val, y_val=y_val,
                        total_epochs=args.epochs, on_epoch=checkpoint)
    except KeyboardInterrupt:
        where = f"the checkpoint of epoch {trainer.epochs_done} is in {out}" if every and trainer.epochs_done else "no checkpoint was written"
        log(f"interrupted during epoch {trainer.epochs_done + 1}; {where}; continue with --resume {out}")
        raise
    except DivergenceError as exc:
        if every and trainer.epochs_done:
            raise DivergenceError(f"{exc}; the checkpoint of epoch {trainer.epochs_done} in {out} is intact") from None
        raise
    history = trainer.history
    total = time.perf_counter() - t0

    y_pred = model.predict(ds.x_test)
    test_acc = float((y_pred == ds.y_test).mean())
    io.save(model, out / "model.npz", class_names=ds.class_names)
    metrics = {
        "dataset": args.dataset,
        "data_source": ds.source,
        "device": backend.name,
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


def _check_writable(out):
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FastMLPError(f"cannot create output folder {out}: {exc.strerror or exc}; pass a writable --out") from None
    if not out.is_dir():
        raise FastMLPError(f"output path {out} exists and is not a folder; pass another --out")


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        run(args)
    except FastMLPError as exc:
        if args.debug:
            raise
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastmlp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
