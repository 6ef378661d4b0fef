"""Fit time and test score of fastmlp's MLPClassifier / MLPRegressor against scikit-learn's, side by side.

    python -m benchmarks.sklearn_fit --data-dir DATA_DIR --label cpu-2core

(DATA_DIR: the folder holding mnist/; without ``--data-dir`` fastmlp's own
look-up finds it.) The default run measures every combination of

- data (``--data``): ``mnist``, full MNIST, 60000 x 784 train, 10000 test,
  pixels / 255 in [0, 1], network 784-128-64-out; ``digits``, scikit-learn's
  ``load_digits`` (1797 x 64), pixels / 16 in [0, 1], a fixed stratified split
  (``train_test_split(test_size=0.25, random_state=0)``: 1347 train, 450 test),
  network 64-64-out;
- estimator (``--estimators``): ``classifier`` (10 classes, score = test
  accuracy) and ``regressor`` (target: the digit label 0..9 as a float, in X's
  dtype; score = test R²);
- solver (``--solvers``): ``adam`` with scikit-learn's defaults (learning rate
  0.001, batch_size "auto" = 200), max_iter 5 on MNIST and 50 on digits;
  ``lbfgs``, max_iter 30 on MNIST and 100 on digits; ``sgd`` (not run by
  default): momentum 0.9, batch 128, learning rate 0.05,
  max_iter 3 on MNIST and 50 on digits;
- precision case (``--cases``): ``drop-in``, X as float64 and fastmlp with its
  defaults, so both train in float64 (swapping the import in a script);
  ``float32``, X as float32, so both train in float32 (scikit-learn's rule,
  which fastmlp's default ``dtype=None`` follows) -- except scikit-learn's
  lbfgs, whose parameters are SciPy's float64 vector, so its products and
  fitted coefs_ are float64 while fastmlp's lbfgs stays in float32 (the
  table's "coefs sk/fm" column shows what each fit ended in).
  ``forced-float32`` (not run by default) gives float64 X to both and
  ``dtype="float32"`` to fastmlp, so only scikit-learn trains in float64.

Both estimators get the same parameters (everything else at scikit-learn's
defaults, ``random_state=--seed``), the same X and y, and the same max_iter
(``--max-iter`` changes it: ``N`` for all, ``SOLVER=N``, or ``DATA:SOLVER=N``).
Every case starts with one untimed warm-up fit of each estimator on at most
2000 training rows with max_iter 2 (JIT compilation or Numba's cache, BLAS
thread start-up), then the timed fits alternate scikit-learn, fastmlp,
scikit-learn, ... ``--repeats`` (3) times each. For each case it records every fit
time and the median, the test score and n_iter_ of every fit, the dtype each
estimator trained in, the time ratio fastmlp / scikit-learn (medians) and a
speed probe of the machine before and after (see benchmarks.common). It prints
one table and writes all of it, the settings and the machine description as
JSON to benchmarks/results/sklearn-fit-<label or host>.json.

The defaults take about 8 minutes on a 2-core machine, three quarters of it
lbfgs on MNIST; ``--data digits`` alone takes about 25 seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np

import fastmlp

from . import blas_floor
from . import common as bench

# data set -> network and default max_iter per solver
DATA = {
    "mnist": {"hidden_layer_sizes": (128, 64), "max_iter": {"adam": 5, "lbfgs": 30, "sgd": 3}},
    "digits": {"hidden_layer_sizes": (64,), "max_iter": {"adam": 50, "lbfgs": 100, "sgd": 50}},
}
# solver -> its parameters beyond scikit-learn's defaults
SOLVERS = {
    "adam": {"solver": "adam"},
    "lbfgs": {"solver": "lbfgs"},
    "sgd": {"solver": "sgd", "momentum": 0.9, "batch_size": 128, "learning_rate_init": 0.05},
}
# precision case -> (dtype of X and of the regressor's y, fastmlp's extra parameters)
CASES = {
    "drop-in": (np.float64, {}),
    "float32": (np.float32, {}),
    "forced-float32": (np.float64, {"dtype": "float32"}),
}
ESTIMATORS = ("classifier", "regressor")
DEFAULTS = {"data": ["mnist", "digits"], "solvers": ["adam", "lbfgs"], "estimators": list(ESTIMATORS),
            "cases": ["drop-in", "float32"]}
WARMUP_ROWS, WARMUP_ITER = 2000, 2
PROBE_REPEATS = 100  # bench.speed_probe before and after each case: about 0.2 s each on 2 cores


def load(name, data_dir):
    """(description, X_train, y_train, X_test, y_test) with X float64 in [0, 1] and integer labels."""
    if name == "mnist":
        ds = fastmlp.load_mnist(data_dir=data_dir, normalize=False)
        scale, xs = 255.0, (ds.x_train, ds.x_test)
        ys = (ds.y_train, ds.y_test)
        about = {"source": "fastmlp.load_mnist", "scaling": "pixels / 255"}
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
        scale, xs, ys = 16.0, (X_train, X_test), (y_train, y_test)
        about = {"source": "sklearn.datasets.load_digits",
                 "split": "train_test_split(test_size=0.25, random_state=0, stratify=y)", "scaling": "pixels / 16"}
    X_train, X_test = (np.asarray(x, dtype=np.float64).reshape(len(x), -1) / scale for x in xs)
    y_train, y_test = (np.asarray(y, dtype=np.int64) for y in ys)
    about.update(n_train=len(X_train), n_test=len(X_test), n_features=X_train.shape[1])
    return about, X_train, y_train, X_test, y_test


def parse_max_iter(items, data, solvers):
    """{data: {solver: max_iter}}: DATA's defaults, changed by ``N``, ``SOLVER=N`` or ``DATA:SOLVER=N`` items."""
    table = {d: {s: DATA[d]["max_iter"][s] for s in solvers} for d in data}
    for item in items or ():
        where, _, n = item.rpartition("=")
        d, _, s = where.rpartition(":") if where else ("", "", "")
        if not n.isdigit() or int(n) < 1 or (d and d not in DATA) or (s and s not in SOLVERS):
            raise SystemExit(f"--max-iter {item!r}: expected N, SOLVER=N or DATA:SOLVER=N with N >= 1, "
                             f"DATA in {list(DATA)}, SOLVER in {list(SOLVERS)}")
        for dd in table:
            for ss in table[dd]:
                if d in ("", dd) and s in ("", ss):
                    table[dd][ss] = int(n)
    return table


def _counting_minimize(minimize, nfev):
    """scipy.optimize.minimize that appends each result's nfev to ``nfev`` (both
    estimators' lbfgs call it through the module attribute)."""
    def wrapper(*args, **kwargs):
        result = minimize(*args, **kwargs)
        nfev.append(int(result.nfev))
        return result
    return wrapper


def _fit(cls, params, X, y, X_test, y_test):
    import scipy.optimize
    from sklearn.exceptions import ConvergenceWarning

    est = cls(**params)
    nfev, minimize = [], scipy.optimize.minimize
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a modest max_iter on purpose
        scipy.optimize.minimize = _counting_minimize(minimize, nfev)
        try:
            t0 = time.perf_counter()
            est.fit(X, y)
            seconds = time.perf_counter() - t0
        finally:
            scipy.optimize.minimize = minimize
    return {"seconds": seconds, "score": float(est.score(X_test, y_test)), "n_iter": int(est.n_iter_),
            "nfev": sum(nfev) if nfev else None, "trained_dtype": str(est.coefs_[0].dtype),
            "layer_sizes": [int(est.coefs_[0].shape[0])] + [int(c.shape[1]) for c in est.coefs_]}


def floor_row(params, fastmlp_fits, n, repeats):
    """The BLAS floor (benchmarks.blas_floor) of fastmlp's last fit: its layer sizes,
    dtype and epochs (sgd, adam) or loss evaluations (lbfgs)."""
    last = fastmlp_fits[-1]
    lbfgs = params["solver"] == "lbfgs"
    count = last["nfev"] if lbfgs else last["n_iter"]
    batch = params.get("batch_size", 200)
    seconds = blas_floor.floor_seconds(last["layer_sizes"], n, last["trained_dtype"], params["solver"], count,
                                       batch=batch, repeats=repeats)
    return {"floor_s": seconds, "layer_sizes": last["layer_sizes"], "dtype": last["trained_dtype"],
            "unit": "evaluations" if lbfgs else "epochs", "count": count,
            "rows_per_product": blas_floor.CHUNK_ROWS if lbfgs else min(batch, n)}


def run_case(classes, params, extra, X, y, X_test, y_test, repeats):
    """Warm-up fits, then ``repeats`` alternating timed fits; returns {who: summary}."""
    n = min(WARMUP_ROWS, len(X))
    warm = {**params, "max_iter": min(WARMUP_ITER, params["max_iter"])}
    for who, cls in classes.items():
        _fit(cls, {**warm, **(extra if who == "fastmlp" else {})}, X[:n], y[:n], X_test[:50], y_test[:50])
    fits = {who: [] for who in classes}
    for _ in range(repeats):
        for who, cls in classes.items():
            fits[who].append(_fit(cls, {**params, **(extra if who == "fastmlp" else {})}, X, y, X_test, y_test))
    out = {}
    for who, runs in fits.items():
        secs = [f["seconds"] for f in runs]
        out[who] = {"fit_s": secs, "median_fit_s": statistics.median(secs), "scores": [f["score"] for f in runs],
                    "score": runs[-1]["score"], "n_iter": [f["n_iter"] for f in runs],
                    "trained_dtype": sorted({f["trained_dtype"] for f in runs}),
                    "nfev": [f["nfev"] for f in runs]}
    out["blas_floor"] = floor_row(params, fits["fastmlp"], len(X), repeats)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sklearn_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: fastmlp's look-up)")
    p.add_argument("--data", nargs="+", default=DEFAULTS["data"], choices=list(DATA))
    p.add_argument("--estimators", nargs="+", default=DEFAULTS["estimators"], choices=list(ESTIMATORS))
    p.add_argument("--solvers", nargs="+", default=DEFAULTS["solvers"], choices=list(SOLVERS))
    p.add_argument("--cases", nargs="+", default=DEFAULTS["cases"], choices=list(CASES))
    p.add_argument("--max-iter", nargs="+", default=None, metavar="[[DATA:]SOLVER=]N",
                   help="max_iter of both estimators: N for all, SOLVER=N, DATA:SOLVER=N (default: " +
                   "; ".join(f"{d} " + " ".join(f"{so}={n}" for so, n in v["max_iter"].items())
                             for d, v in DATA.items()) + ")")
    p.add_argument("--repeats", type=int, default=3, help="timed fits of each estimator per case")
    p.add_argument("--device", default="cpu", help="fastmlp's device")
    p.add_argument("--seed", type=int, default=0, help="random_state of both estimators")
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    max_iter = parse_max_iter(args.max_iter, args.data, args.solvers)

    import sklearn
    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor

    from fastmlp import MLPClassifier, MLPRegressor

    classes = {"classifier": {"sklearn": SkClassifier, "fastmlp": MLPClassifier},
               "regressor": {"sklearn": SkRegressor, "fastmlp": MLPRegressor}}
    t_start = time.perf_counter()
    data_about, rows = {}, []
    for data in args.data:
        about, X_train, y_train, X_test, y_test = load(data, args.data_dir)
        data_about[data] = {**about, "hidden_layer_sizes": list(DATA[data]["hidden_layer_sizes"]),
                            "regression_target": "the digit label 0..9 as a float, in X's dtype"}
        for estimator in args.estimators:
            for solver in args.solvers:
                params = {"hidden_layer_sizes": DATA[data]["hidden_layer_sizes"], **SOLVERS[solver],
                          "max_iter": max_iter[data][solver], "random_state": args.seed}
                for case in args.cases:
                    dtype, extra = CASES[case]
                    X, Xt = X_train.astype(dtype), X_test.astype(dtype)
                    y, yt = (y_train, y_test) if estimator == "classifier" else \
                        (y_train.astype(dtype), y_test.astype(dtype))
                    t_case, probe = time.perf_counter(), [bench.speed_probe(PROBE_REPEATS)]
                    res = run_case(classes[estimator], params, {**extra, "device": args.device}, X, y, Xt, yt,
                                   args.repeats)
                    probe.append(bench.speed_probe(PROBE_REPEATS))
                    row = {"data": data, "estimator": estimator, "solver": solver, "case": case,
                           "X_dtype": np.dtype(dtype).name, "params": {**params, "hidden_layer_sizes":
                                                                       list(params["hidden_layer_sizes"])},
                           "fastmlp_params": {**extra, "device": args.device},
                           "score_name": "accuracy" if estimator == "classifier" else "r2", **res,
                           "time_ratio": res["fastmlp"]["median_fit_s"] / res["sklearn"]["median_fit_s"],
                           "floor_ratio": res["blas_floor"]["floor_s"] / res["sklearn"]["median_fit_s"],
                           "score_diff": res["fastmlp"]["score"] - res["sklearn"]["score"],
                           "speed_probe_us": probe, "case_wall_s": time.perf_counter() - t_case}
                    rows.append(row)
                    print(f"  {data} {estimator} {solver} {case}: ratio {row['time_ratio']:.2f} "
                          f"({row['case_wall_s']:.1f} s with warm-up)", flush=True)
    total = time.perf_counter() - t_start

    print(f"\nfastmlp against scikit-learn {sklearn.__version__}: median fit seconds of {args.repeats} fits each, "
          f"alternating after a warm-up; score = test accuracy (classifier) or test R² (regressor)")
    print("(floor s: fastmlp's matrix products alone with NumPy's BLAS, benchmarks.blas_floor; floor/sk: the "
          "lowest ratio an implementation doing those products could reach)")
    print("(X: X's dtype; coefs sk/fm: the dtype of each fitted coefs_; n_iter sk/fm: n_iter_ of the last fits)")
    head = (f"{'data':<7}{'estimator':<11}{'solver':<7}{'case':<15}{'X':<8}{'coefs sk/fm':<16}{'max_iter':>8}"
            f"{'sklearn s':>10}{'fastmlp s':>10}{'ratio':>7}{'floor s':>9}{'floor/sk':>9}{'sklearn score':>14}{'fastmlp score':>14}"
            f"{'n_iter sk/fm':>14}")
    print(head)
    print("-" * len(head))
    for r in rows:
        sk, fm = r["sklearn"], r["fastmlp"]
        coefs = f"{','.join(sk['trained_dtype'])}/{','.join(fm['trained_dtype'])}"
        n_iter = f"{sk['n_iter'][-1]}/{fm['n_iter'][-1]}"
        print(f"{r['data']:<7}{r['estimator']:<11}{r['solver']:<7}{r['case']:<15}{r['X_dtype']:<8}{coefs:<16}"
              f"{r['params']['max_iter']:>8}{sk['median_fit_s']:>10.3f}{fm['median_fit_s']:>10.3f}"
              f"{r['time_ratio']:>7.2f}{r['blas_floor']['floor_s']:>9.3f}{r['floor_ratio']:>9.2f}{sk['score']:>14.4f}{fm['score']:>14.4f}{n_iter:>14}")
    print(f"total {total:.0f} s")

    result = {
        "benchmark": "sklearn_fit",
        "when": bench.stamp(),
        "machine": {**bench.machine([args.device]), "scikit-learn": sklearn.__version__},
        "settings": {
            "data": data_about,
            "estimators": args.estimators,
            "solvers": {s: SOLVERS[s] for s in args.solvers},
            "cases": {c: {"X_dtype": np.dtype(CASES[c][0]).name, "fastmlp_params": CASES[c][1]} for c in args.cases},
            "max_iter": max_iter,
            "repeats": args.repeats,
            "warm_up": {"rows": WARMUP_ROWS, "max_iter": WARMUP_ITER},
            "random_state": args.seed,
            "device": args.device,
            "other_params": "scikit-learn's defaults, the same for both",
        },
        "total_s": total,
        "results": rows,
    }
    out = bench.save(result, f"sklearn-fit-{args.label or result['machine']['host']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
