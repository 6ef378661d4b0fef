"""The settings of a training run: :class:`TrainConfig`, one object from the command
line through the library, the checkpoint, ``metrics.json`` and the sweep.

    >>> import fastmlp
    >>> config = fastmlp.TrainConfig(epochs=5, hidden=(128,))        # the 'default' preset, changed
    >>> config = fastmlp.TrainConfig.from_preset("fast", lr=0.3)     # another preset, changed
    >>> result = fastmlp.run(config)                                 # what 'fastmlp train' runs
    >>> result.model, result.history, result.out

Every field is checked here, once: a :class:`TrainConfig` that exists holds valid
values (converted: tuples of ints for sizes, floats for rates). The command line
reads its flags with :func:`parse` (the same checks, reported as usage errors),
the sweep reads its values with it too, and a resumed run reads the settings its
checkpoint recorded with :meth:`TrainConfig.from_record`.

Which fields decide the result (:data:`SETTINGS`: recorded in the checkpoint and
kept by a resumed run, varied by the sweep) and which only say where and how to
run (:data:`PLACEMENT`: data folder, device, output) is part of each field's
metadata.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from . import presets
from .errors import ConfigError

SCHEDULES = ("constant", "step", "cosine", "onecycle")  # fastmlp.optim's, without importing it


class SettingError(ValueError):
    """A value a setting cannot take; the message says why, without the setting's name
    (argparse and the sweep put the flag in front, TrainConfig the field's name)."""


# --------------------------------------------------------------------------
# The rules each field follows: one function per kind, on a value already of its type
# --------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _positive_int(value, shown):
    if not _is_int(value):
        raise SettingError(f"expected a positive int, got {shown!r}")
    if not value > 0:
        raise SettingError(f"must be > 0, got {shown}")
    return int(value)


def _positive_float(value, shown):
    if not _is_real(value):
        raise SettingError(f"expected a positive float, got {shown!r}")
    if not (value > 0 and math.isfinite(value)):
        raise SettingError(f"must be > 0, got {shown}")
    return float(value)


def _non_negative_int(value, shown):
    if not _is_int(value):
        raise SettingError(f"expected an integer >= 0, got {shown!r}")
    if not value >= 0:
        raise SettingError(f"must be >= 0, got {shown}")
    return int(value)


def _non_negative_float(value, shown):
    if not _is_real(value):
        raise SettingError(f"expected a number >= 0, got {shown!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise SettingError(f"must be a finite number >= 0, got {shown}")
    return float(value)


def _fraction(value, shown):
    value = _non_negative_float(value, shown)
    if not value < 1:
        raise SettingError(f"must be in [0, 1), got {shown}")
    return value


def _accuracy(value, shown):
    value = _positive_float(value, shown)
    if value > 1:
        raise SettingError(f"is a fraction in (0, 1], like 0.98; got {shown}")
    return value


def _int_tuple(value, shown, example):
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)) \
            or not all(_is_int(v) for v in value):
        raise SettingError(f"expected comma-separated integers like {example}, got {shown!r}")
    return tuple(int(v) for v in value)


def _sizes(value, shown):
    sizes = _int_tuple(value, shown, "784,128,64,10")
    if len(sizes) < 2 or min(sizes) < 1:
        raise SettingError(f"need at least two positive sizes like 784,128,64,10, got {shown!r}")
    return sizes


def _hidden(value, shown):
    sizes = _int_tuple(value, shown, "256,128")
    if min(sizes, default=1) < 1:
        raise SettingError(f"hidden sizes must be positive, got {shown!r}")
    return sizes


def _text(value, shown):
    if not isinstance(value, str):
        raise SettingError(f"expected text, got {shown!r}")
    return value


def _path(value, shown):
    import os

    if not isinstance(value, (str, os.PathLike)):
        raise SettingError(f"expected a path, got {shown!r}")
    return os.fspath(value)


def _flag(value, shown):
    if not isinstance(value, (bool, np.bool_)):
        raise SettingError(f"expected True or False, got {shown!r}")
    return bool(value)


# text -> a value of the rule's type, for the command line (then the rule checks it)
def _read_int(text, rule):
    try:
        return int(text)
    except ValueError:
        rule(text, text)  # the rule's own "expected ..." message
        raise


def _read_float(text, rule):
    try:
        return float(text)
    except ValueError:
        rule(text, text)
        raise


def _read_ints(text, rule):
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        rule(text, text)
        raise


_READERS = {_positive_int: _read_int, _non_negative_int: _read_int, _positive_float: _read_float,
            _non_negative_float: _read_float, _fraction: _read_float, _accuracy: _read_float,
            _sizes: _read_ints, _hidden: _read_ints}


# --------------------------------------------------------------------------
# The fields
# --------------------------------------------------------------------------

_DEFAULT = presets.DEFAULT


def _field(default, rule, help, group, *, choices=None, optional=False, setting=True, flag=None, metavar=None):
    """A TrainConfig field: its default, rule, command-line help and group. ``setting``:
    whether it decides the result (recorded by the checkpoint, varied by the sweep)."""
    return field(default=default, metadata={"rule": rule, "help": help, "group": group, "choices": choices,
                                            "optional": optional, "setting": setting, "flag": flag,
                                            "metavar": metavar})


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run; the defaults are the ``default`` preset's, so
    ``fastmlp.run(TrainConfig())`` is ``fastmlp train`` with no flags.

    Invalid values raise a :class:`~fastmlp.ConfigError` naming the field.
    ``sizes`` (input, hidden..., output) wins over ``hidden``; without it the
    sizes are the data's features, ``hidden`` and its classes. Change a config
    with :func:`dataclasses.replace` (checked again) or :meth:`from_preset`.
    """

    # data
    dataset: str = _field("mnist", _text, "which dataset (default: %(default)s)", "data",
                          choices=("mnist", "fashion-mnist"))
    data_dir: str | None = _field(
        None, _path, "folder with the four IDX files (.gz or raw) or a Kaggle train.csv "
        "(default: $FASTMLP_DATA_DIR, then the cache, downloading into it)", "data", optional=True, setting=False)
    download: bool = _field(True, _flag, "fail instead of downloading missing files", "data", setting=False,
                            flag="--no-download")
    val_split: float = _field(0.0, _fraction,
                              "fraction of the training set held out for validation (default: %(default)s)", "data")
    # recipe
    preset: str = _field("default", _text,
                         "a measured recipe (fastmlp/presets.py) whose values become the defaults of the flags "
                         "below; flags given still win (default: %(default)s)", "recipe", choices=tuple(presets.PRESETS))
    # model
    hidden: tuple = _field(_DEFAULT["hidden"], _hidden,
                           "hidden layer sizes, e.g. 256,128; --sizes wins (default: %(default)s)", "model")
    sizes: tuple | None = _field(
        None, _sizes, "layer sizes including input and output, e.g. 784,128,64,10 "
        "(default: features,--hidden,classes)", "model", optional=True)
    activation: str = _field(_DEFAULT["activation"], _text, "hidden-layer activation (default: %(default)s)", "model",
                             choices=("relu", "sigmoid", "tanh"))
    init: str | None = _field(None, _text, "weight initialisation (default: he for relu, xavier otherwise)", "model",
                              choices=("he", "xavier", "normal"), optional=True)
    init_std: float = _field(0.01, _positive_float, "std of --init normal (default: %(default)s)", "model")
    dtype: str = _field("float32", _text, "precision of the weights and of training (default: %(default)s)", "model",
                        choices=("float32", "float64"))
    # training
    optimizer: str = _field(_DEFAULT["optimizer"], _text, "optimiser (default: %(default)s)", "training",
                            choices=("sgd", "momentum", "nesterov", "adam"))
    lr: float = _field(_DEFAULT["lr"], _positive_float, "(peak) learning rate (default: %(default)s)", "training")
    momentum: float = _field(_DEFAULT["momentum"], _fraction, "for momentum / nesterov (default: %(default)s)",
                             "training")
    weight_decay: float = _field(_DEFAULT["weight_decay"], _non_negative_float,
                                 "L2 penalty on weights (default: %(default)s)", "training")
    schedule: str = _field(_DEFAULT["schedule"], _text, "learning-rate schedule (default: %(default)s)", "training",
                           choices=SCHEDULES)
    warmup: float = _field(_DEFAULT["warmup"], _non_negative_float,
                           "epochs of linear learning-rate warm-up (a fraction is fine); for onecycle, its rising part "
                           "(default: %(default)s)", "training")
    dropout: float = _field(_DEFAULT["dropout"], _fraction,
                            "drop probability of hidden units in training (default: %(default)s)", "training")
    label_smoothing: float = _field(_DEFAULT["label_smoothing"], _fraction,
                                    "train on (1 - eps) one-hot + eps / classes (default: %(default)s)", "training")
    target_accuracy: float | None = _field(
        None, _accuracy, "stop once the validation accuracy (the test accuracy without --val-split) reaches A, "
        "e.g. 0.98 (default: train all --epochs)", "training", optional=True, metavar="A")
    eval_every: int | None = _field(
        None, _positive_int, "with --target-accuracy: also check every STEPS steps (default: after each epoch only)",
        "training", optional=True, metavar="STEPS")
    batch_size: int = _field(_DEFAULT["batch_size"], _positive_int, "mini-batch size (default: %(default)s)", "training")
    epochs: int = _field(_DEFAULT["epochs"], _positive_int,
                         "epochs to train; with --resume, the epochs in all to continue the run to "
                         "(default: %(default)s)", "training")
    seed: int = _field(_DEFAULT["seed"], _non_negative_int,
                       "seed of the initial weights, the shuffles and the validation split (default: %(default)s)",
                       "training")
    device: str | None = _field(None, _text, "cpu, cuda or cuda:N (default: $FASTMLP_DEVICE, else cpu)", "training",
                                optional=True, setting=False)
    cuda_graph: str = _field(
        "auto", _text, "on a GPU, replay each step as a CUDA graph: auto uses graphs when capture works and "
        "says why not otherwise, on fails if it cannot, off launches kernel by kernel (default: %(default)s)",
        "training", choices=("auto", "on", "off"), setting=False)
    # output
    out: str | None = _field(None, _path, "output folder (default: a new runs/<dataset>-<time>)", "output",
                             optional=True, setting=False)
    overwrite: bool = _field(False, _flag, "replace the run that --out holds (its checkpoint, model, metrics and plots)",
                             "output", setting=False)
    checkpoint_every: int = _field(
        1, _non_negative_int, "write checkpoint.npz into the output folder every N epochs (0: never) "
        "(default: %(default)s)", "output")
    plots: bool = _field(True, _flag, "skip the PNG plots", "output", setting=False, flag="--no-plots")
    quiet: bool = _field(False, _flag, "no progress bar and no per-epoch lines", "output", setting=False)
    verbose: bool = _field(False, _flag, "also name the BLAS, its kernels and threads", "output", setting=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata["optional"]:
                continue
            try:
                checked = check(f.name, value)
            except SettingError as exc:
                raise ConfigError(f"TrainConfig {f.name} {exc}") from None
            object.__setattr__(self, f.name, checked)

    @classmethod
    def from_preset(cls, name="default", **changes):
        """The config of preset ``name`` with ``changes`` (field=value) applied."""
        return cls(**{**presets.preset(name), "preset": name, **changes})

    @classmethod
    def from_record(cls, record, **placement):
        """The config a checkpoint's settings record (see :meth:`record`) stands for,
        with ``placement`` (data_dir, device, ...) added; a SettingError naming the
        fields that are missing or malformed. A record without the recipe fields
        (``preset``, ``warmup``, ...) trained without them, on the ``classic`` recipe."""
        values, bad = {}, []
        for name in SETTINGS:
            if name == "hidden":
                continue  # the record's sizes say it
            if name not in record and name in RECIPE_UNRECORDED:
                values[name] = RECIPE_UNRECORDED[name]
                continue
            try:
                value = record[name]
                if value is None and FIELDS[name].metadata["optional"]:
                    values[name] = None
                    continue
                values[name] = check(name, tuple(value) if isinstance(value, list) else value)
            except (KeyError, SettingError, TypeError):
                bad.append(name)
        if not bad and values["sizes"] is None:
            bad.append("sizes")
        if bad:
            raise SettingError(f"the settings {', '.join(bad)} are missing or malformed")
        return cls(**values, hidden=values["sizes"][1:-1], **placement)

    def record(self):
        """{setting: value} of the fields that decide the result, JSON-ready: what a
        checkpoint records and a resumed run keeps."""
        return {name: list(v) if isinstance(v, tuple) else v for name in SETTINGS
                for v in [getattr(self, name)]}

    def as_dict(self):
        """Every field, JSON-ready (tuples as lists): what ``metrics.json`` records."""
        return {f.name: list(v) if isinstance(v, tuple) else v for f in dataclasses.fields(self)
                for v in [getattr(self, f.name)]}

    def resolved_sizes(self, features, classes):
        """The layer sizes for data with ``features`` columns and ``classes`` classes."""
        return self.sizes or (features, *self.hidden, classes)

    def flags(self, names=None):
        """The ``fastmlp train`` flags that give this config's ``names`` (default: the
        settings that differ from the config's preset), as a list of arguments."""
        if names is None:
            base = TrainConfig.from_preset(self.preset)
            names = [n for n in SETTINGS if getattr(self, n) != getattr(base, n) or n == "preset"]
        argv = []
        for name in names:
            value = getattr(self, name)
            if value is None:
                continue
            argv += [option(name), format_value(value)]
        return argv


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# The fields that decide the result, in the command line's order.
SETTINGS = tuple(name for name, f in FIELDS.items() if f.metadata["setting"])
# Where and how a run happens: the data's folder, the device, the output.
PLACEMENT = tuple(name for name, f in FIELDS.items() if not f.metadata["setting"])
# What a checkpoint without the recipe fields trained with: no warm-up, no
# regularisers, no target, and otherwise the 'classic' recipe.
RECIPE_UNRECORDED = {"preset": "classic", "warmup": 0.0, "dropout": 0.0, "label_smoothing": 0.0,
                     "target_accuracy": None, "eval_every": None}
# The Trainer arguments the settings map to one to one.
TRAINER_SETTINGS = presets.TRAINER_ARGS


def check(name, value, shown=None):
    """``value`` of field ``name`` checked and converted, or a SettingError saying why
    (without the name)."""
    f = FIELDS[name]
    shown = value if shown is None else shown
    checked = f.metadata["rule"](value, shown)
    choices = f.metadata["choices"]
    if choices is not None and checked not in choices:
        raise SettingError(f"invalid choice: {shown!r} (choose from {', '.join(map(repr, choices))})")
    return checked


def parse(name, text):
    """The value of field ``name`` that command-line ``text`` stands for, checked; a
    SettingError saying why not."""
    f = FIELDS[name]
    rule = f.metadata["rule"]
    reader = _READERS.get(rule)
    value = reader(text, rule) if reader else text
    return check(name, value, text)


def option(name):
    """The command-line option of field ``name``: ``--batch-size``, ``--no-plots``."""
    return FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def format_value(value):
    """A value as its command line writes it: ``256,128`` for sizes."""
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def argparse_type(name):
    """An argparse ``type=`` for field ``name``: :func:`parse`, its SettingError as a usage error."""
    import argparse

    def read(text):
        try:
            return parse(name, text)
        except SettingError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    read.__name__ = name  # argparse names the type in some messages
    return read


def add_arguments(parser, names, defaults=None):
    """Add the options of fields ``names`` to ``parser`` (an ArgumentParser or a group),
    each with its help, type, choices and the default from ``defaults`` (default:
    TrainConfig's). True/False fields are switches (``--no-plots`` sets plots False)."""
    defaults = defaults or {}
    for name in names:
        f = FIELDS[name]
        meta = f.metadata
        default = defaults.get(name, f.default)
        if meta["rule"] is _flag:
            parser.add_argument(option(name), dest=name, help=meta["help"],
                                action="store_false" if f.default else "store_true")
            continue
        text = meta["help"]
        if isinstance(default, tuple):
            text = text.replace("%(default)s", format_value(default))
        parser.add_argument(option(name), dest=name, default=default, help=text, metavar=meta["metavar"],
                            type=None if meta["choices"] else argparse_type(name), choices=meta["choices"])


def split_validation(x, y, fraction, seed):
    """Hold out ``fraction`` of the rows (a seeded shuffle) as a validation set:
    (x_train, y_train, x_val, y_val), the last two None for ``fraction`` 0."""
    if not fraction:
        return x, y, None, None
    n = x.shape[0]
    n_val = int(round(n * fraction))
    if not 0 < n_val < n:
        raise ConfigError(f"a validation split of {fraction} leaves {n_val} of {n} rows for validation; "
                          "choose a fraction that keeps both parts non-empty")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]
