"""Test accuracy and training time of training recipes, over seeds: how the presets were chosen.

    python -m benchmarks.recipes --preset fast --dataset mnist --seeds 0 1 2 \\
        --try "" "lr=0.3 batch_size=256" --label fast-cpu-2core --data-dir DATA_DIR

Each recipe is a preset of fastmlp/presets.py with the values of one ``--try``
changed (flag names with underscores). Every recipe trains once per seed and
dataset through the same Trainer as ``python -m fastmlp.train``, on the uint8
images the CLI uses. The clock counts training steps only: the kernels are
compiled before it starts and the per-epoch evaluation is left out. The table
gives, per recipe and dataset, the lowest and mean final test accuracy over the
seeds, the mean training time, and the slower of two readings of
``common.speed_probe`` taken before and after the recipe (this VM is shared: a
row whose probe is well above the others' was timed while the host was slow and
says little about speed). Results go to
benchmarks/results/recipes-<label>.json; ``--log`` names a copy of the console.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import fastmlp
from fastmlp import presets

from . import common


def parse_changes(text):
    """'lr=0.3 batch_size=256 hidden=256,128' -> {'lr': 0.3, 'batch_size': 256, 'hidden': (256, 128)}."""
    out = {}
    for item in text.split():
        key, _, value = item.partition("=")
        if key == "hidden":
            out[key] = tuple(int(v) for v in value.split(",") if v)
        else:
            kind = type(presets.DEFAULT[key])
            out[key] = kind(float(value)) if kind is int else kind(value)
    return out


def train_once(values, ds, seed, log=print):
    """Train the recipe ``values`` with ``seed``: one result row."""
    model = fastmlp.MLP((ds.n_features, *values["hidden"], ds.n_classes), values["activation"], seed=seed)
    kwargs = {k: values[k] for k in presets.TRAINER_ARGS if k in values}
    trainer = fastmlp.Trainer(model, **{**kwargs, "seed": seed}, progress=False, log=None)
    t0 = time.perf_counter()
    h = trainer.fit(ds.x_train, ds.y_train, values["epochs"], X_test=ds.x_test, y_test=ds.y_test)
    wall = time.perf_counter() - t0
    row = {"seed": seed, "test_accuracy": h["test_acc"][-1], "train_seconds": float(sum(h["epoch_time"])),
           "median_epoch_s": statistics.median(h["epoch_time"]), "fit_wall_s": wall, "compile_s": h["compile_time"],
           "test_acc_per_epoch": h["test_acc"]}
    log(f"    seed {seed}: {100 * row['test_accuracy']:.2f} % after {values['epochs']} epochs, "
        f"{row['train_seconds']:.2f} s of training ({row['median_epoch_s']:.3f} s median epoch)")
    return row


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.recipes", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default", choices=list(presets.PRESETS))
    p.add_argument("--try", dest="tries", nargs="+", default=[""], metavar="CHANGES",
                   help='changes to the preset, one recipe each: "lr=0.3 epochs=5" ("" for the preset itself)')
    p.add_argument("--dataset", nargs="+", default=["mnist"], choices=["mnist", "fashion-mnist"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--label", default=None, help="results file suffix (default: the preset and host name)")
    p.add_argument("--log", default=None, help="also write the console output to this file")
    args = p.parse_args(argv)

    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    machine = common.machine(["cpu"])
    log(f"{machine['cpu']}, {machine['cores']} cores; BLAS {machine.get('blas_runtime')}")
    recipes = []
    for changes in args.tries:
        values = {**presets.preset(args.preset), **parse_changes(changes)}
        recipes.append({"preset": args.preset, "changes": changes, "flags": presets.as_flags(values), "results": {}})
    for name in args.dataset:
        ds = fastmlp.load_dataset(name, data_dir=args.data_dir, normalize=False)
        for r in recipes:
            values = {**presets.preset(r["preset"]), **parse_changes(r["changes"])}
            probe = common.speed_probe()
            log(f"{name}: preset {r['preset']}{' with ' + r['changes'] if r['changes'] else ''} "
                f"(speed probe {probe:.0f} us)")
            rows = [train_once(values, ds, seed, log) for seed in args.seeds]
            probes = [probe, common.speed_probe()]
            accs = [row["test_accuracy"] for row in rows]
            r["results"][name] = {"min_test_accuracy": min(accs), "mean_test_accuracy": statistics.mean(accs),
                                  "mean_train_seconds": statistics.mean(row["train_seconds"] for row in rows),
                                  "speed_probe_us": probes, "runs": rows}
    log("")
    log(f"{'dataset':<15}{'min acc':>9}{'mean acc':>10}{'train s':>9}{'probe us':>10}  recipe")
    for r in recipes:
        for name, res in r["results"].items():
            log(f"{name:<15}{100 * res['min_test_accuracy']:>8.2f}%{100 * res['mean_test_accuracy']:>9.2f}%"
                f"{res['mean_train_seconds']:>9.2f}{max(res['speed_probe_us']):>10.0f}  {r['preset']} {r['changes']}")
    result = {"benchmark": "recipes", "when": common.stamp(), "machine": machine, "seeds": args.seeds,
              "recipes": recipes}
    path = common.save(result, f"recipes-{args.label or args.preset + '-' + (machine['host'] or 'host')}")
    log(f"wrote {path}")
    if args.log:
        fastmlp.io.atomic_write(args.log, lambda f: f.write(("\n".join(lines) + "\n").encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
