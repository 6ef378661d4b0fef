"""Named training recipes: ``python -m fastmlp.train --preset NAME``.

A preset is a set of command-line values; a flag given on the command line wins
over the preset's. ``default`` is what a run with no flags does. Each was chosen
by ``python -m benchmarks.recipes`` over seeds 0, 1, 2 (the search and the
confirming runs: ``benchmarks/results/recipes-*``, summed up in
``recipes-search.md``):

- ``default``: at least 98.3 % MNIST and 89.5 % Fashion-MNIST test accuracy for
  every seed, with the least training we found;
- ``fast``: at least 98.0 % MNIST test accuracy for every seed in the least
  training time we found;
- ``classic``: the default recipe of fastmlp 0.1 (784-128-64-10, 30 epochs).
"""

from __future__ import annotations

from .errors import ConfigError


def _recipe(hidden, lr, epochs, **changes):
    """A preset's values, in the order the flags are printed: the shared ones, with ``changes``."""
    values = dict(hidden=tuple(hidden), activation="relu", optimizer="momentum", lr=lr, momentum=0.9,
                  weight_decay=2e-4, schedule="cosine", warmup=0.0, batch_size=128, epochs=epochs, dropout=0.0,
                  label_smoothing=0.0, seed=0)
    assert set(changes) <= set(values), set(changes) - set(values)
    return {**values, **changes}


PRESETS = {
    "default": _recipe((256, 128), lr=0.1, epochs=30, warmup=1.0, dropout=0.1),
    "fast": _recipe((128,), lr=0.5, epochs=5, warmup=0.5, batch_size=256),
    "classic": _recipe((128, 64), lr=0.05, epochs=30),
}
DEFAULT = PRESETS["default"]

# the Trainer arguments that the command line's values map to one to one
TRAINER_ARGS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "schedule", "seed", "warmup", "dropout",
                "label_smoothing", "target_accuracy", "eval_every")


def preset(name):
    """The values of preset ``name``, or a ConfigError listing the presets."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def as_flags(values):
    """'--hidden 256,128 --lr 0.1 ...': a preset as the command-line flags it stands for."""
    def text(v):
        return ",".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)

    return " ".join(f"--{k.replace('_', '-')} {text(v)}" for k, v in values.items())


def trainer_kwargs(args):
    """Trainer keyword arguments from parsed command-line ``args`` (an argparse Namespace)."""
    return {k: getattr(args, k) for k in TRAINER_ARGS if hasattr(args, k)}
