"""Fit time and test accuracy of fastmlp.MLPClassifier against scikit-learn's, on full MNIST.

    python -m benchmarks.sklearn_fit --data-dir ../shared/data --epochs 3

Both estimators get the same arguments (784-128-64-10 ReLU, sgd with momentum
0.9, batch 128, learning_rate_init 0.05, ``--epochs`` epochs, the same
random_state) and the same X, in three set-ups:

- float32: X as float32; scikit-learn then trains in float32, fastmlp with dtype="float32";
- float64: X as float64; both train in float64;
- drop-in: X as float64 with fastmlp's defaults (it trains in float32), i.e.
  what swapping the import in an existing script does.

The fits alternate (scikit-learn, fastmlp, scikit-learn, ...) ``--repeats``
times after one untimed warm-up fit of each on a small subset (JIT compile and
BLAS start-up). Prints the median fit seconds, test accuracy and the time
ratio fastmlp / scikit-learn per set-up, and writes them with the machine
description as JSON to benchmarks/results/sklearn-fit-<host>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np

import fastmlp

from . import common as bench

SETUPS = {
    "float32": (np.float32, {"dtype": "float32"}),
    "float64": (np.float64, {"dtype": "float64"}),
    "drop-in": (np.float64, {}),
}


def _fit(cls, params, X, y, X_test, y_test):
    from sklearn.exceptions import ConvergenceWarning

    est = cls(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few epochs on purpose
        t0 = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t0
    return seconds, float(est.score(X_test, y_test)), est.n_iter_


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sklearn_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: fastmlp's look-up)")
    p.add_argument("--epochs", type=int, default=3, help="max_iter of both estimators")
    p.add_argument("--repeats", type=int, default=2, help="timed fits of each estimator per set-up")
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--device", default="cpu", help="fastmlp's device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)

    import sklearn
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp import MLPClassifier as FastMLP

    ds = fastmlp.load_mnist(data_dir=args.data_dir)
    args_common = dict(hidden_layer_sizes=(128, 64), solver="sgd", momentum=0.9, batch_size=128,
                  learning_rate_init=0.05, max_iter=args.epochs, random_state=args.seed)

    # warm-up: compile fastmlp's kernels (or load them from Numba's cache) and start BLAS
    for dtype, extra in SETUPS.values():
        Xw = ds.x_train[:2000].astype(dtype)
        _fit(SkMLP, {**args_common, "max_iter": 1}, Xw, ds.y_train[:2000], Xw[:10], ds.y_train[:10])
        _fit(FastMLP, {**args_common, **extra, "max_iter": 1, "device": args.device}, Xw, ds.y_train[:2000],
             Xw[:10], ds.y_train[:10])

    rows = []
    for name in args.setups:
        dtype, extra = SETUPS[name]
        X, X_test = ds.x_train.astype(dtype), ds.x_test.astype(dtype)
        runs = {"sklearn": [], "fastmlp": []}
        for _ in range(args.repeats):
            runs["sklearn"].append(_fit(SkMLP, args_common, X, ds.y_train, X_test, ds.y_test))
            runs["fastmlp"].append(_fit(FastMLP, {**args_common, **extra, "device": args.device}, X, ds.y_train,
                                        X_test, ds.y_test))
        row = {"setup": name, "X_dtype": np.dtype(dtype).name, "fastmlp_params": {**extra, "device": args.device}}
        for who, fits in runs.items():
            secs = [s for s, _, _ in fits]
            row[who] = {"fit_s": secs, "median_fit_s": statistics.median(secs),
                        "test_accuracy": fits[-1][1], "n_iter": fits[-1][2]}
        row["time_ratio"] = row["fastmlp"]["median_fit_s"] / row["sklearn"]["median_fit_s"]
        row["accuracy_diff_pp"] = 100 * (row["fastmlp"]["test_accuracy"] - row["sklearn"]["test_accuracy"])
        rows.append(row)

    print(f"\nMNIST 60000 train / 10000 test, 784-128-64-10 relu, sgd momentum 0.9, batch 128, lr 0.05, "
          f"{args.epochs} epochs; median of {args.repeats} fits, alternating")
    print(f"{'set-up':<10}{'sklearn s':>11}{'fastmlp s':>11}{'ratio':>8}{'sklearn acc':>13}{'fastmlp acc':>13}")
    for r in rows:
        print(f"{r['setup']:<10}{r['sklearn']['median_fit_s']:>11.2f}{r['fastmlp']['median_fit_s']:>11.2f}"
              f"{r['time_ratio']:>8.2f}{100 * r['sklearn']['test_accuracy']:>12.2f}%"
              f"{100 * r['fastmlp']['test_accuracy']:>12.2f}%")

    result = {
        "benchmark": "sklearn_fit",
        "when": bench.stamp(),
        "machine": {**bench.machine([args.device]), "scikit-learn": sklearn.__version__},
        "settings": {"dataset": "mnist", "n_train": len(ds.x_train), "n_test": len(ds.x_test), **args_common,
                     "hidden_layer_sizes": list(args_common["hidden_layer_sizes"]), "repeats": args.repeats},
        "results": rows,
    }
    out = bench.save(result, f"sklearn-fit-{args.label or result['machine']['host']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
