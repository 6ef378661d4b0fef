"""Peak memory of fitting sparse data: fastmlp's estimator against scikit-learn's.

    python -m benchmarks.sparse_fit_memory --label cpu-2core

A SciPy CSR matrix of ``--rows`` x ``--features`` (default 10,000 x 50,000) at
``--density`` (default 1 %), float64, with random two-class labels; both
``MLPClassifier`` s fit it with the same settings (one hidden layer of 100,
adam, batch "auto", ``--epochs`` epochs). Each fit runs in a child process of
its own, which first builds the matrix and makes a tiny fit (imports, kernel
compilation), then reads its peak RSS (``VmHWM``), fits, and reads it again;
the difference is what the fit itself added. A fastmlp that densified X would
add rows x features x 8 bytes (4 GB at the defaults). Writes
benchmarks/results/sparse-fit-memory-<label>.json with both peaks and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from . import common as bench

CHILD = r"""
import json, sys, time, warnings
import numpy as np, scipy.sparse as sp
who, rows, features, density, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
if who == "sklearn":
    from sklearn.neural_network import MLPClassifier
else:
    from fastmlp import MLPClassifier
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
X = sp.random(rows, features, density=density, format="csr", random_state=0, dtype=np.float64)
y = np.random.default_rng(0).integers(0, 2, rows)
warnings.simplefilter("ignore")
MLPClassifier((4,), max_iter=1, random_state=0).fit(X[:50], y[:50])
# reset the high-water mark to the current use, so the fit's own peak is what follows
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = hwm()
t = time.perf_counter()
MLPClassifier((100,), max_iter=epochs, random_state=0).fit(X, y)
seconds = time.perf_counter() - t
print(json.dumps({"before_mb": before, "peak_mb": hwm(), "fit_s": seconds, "nnz": int(X.nnz)}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sparse_fit_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--features", type=int, default=50000)
    p.add_argument("--density", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)
    import sklearn

    rows = {}
    for who in ("sklearn", "fastmlp"):
        proc = subprocess.run([sys.executable, "-c", CHILD, who, str(args.rows), str(args.features),
                               str(args.density), str(args.epochs)], capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["fit_growth_mb"] = r["peak_mb"] - r["before_mb"]
        rows[who] = r
        print(f"{who:<8} peak RSS before the fit {r['before_mb']:7.0f} MB, during it {r['peak_mb']:7.0f} MB: "
              f"the fit added {r['fit_growth_mb']:6.0f} MB in {r['fit_s']:.1f} s")
    ratio = rows["fastmlp"]["fit_growth_mb"] / rows["sklearn"]["fit_growth_mb"]
    dense_mb = args.rows * args.features * 8 / 2**20
    print(f"fastmlp / scikit-learn: {ratio:.2f}x (a dense copy of X alone would be {dense_mb:,.0f} MB)")
    result = {
        "benchmark": "sparse_fit_memory",
        "when": bench.stamp(),
        "machine": {**bench.machine(["cpu"]), "scikit-learn": sklearn.__version__},
        "settings": {**vars(args), "hidden_layer_sizes": [100], "solver": "adam", "dtype": "float64"},
        "results": rows,
        "fit_growth_ratio": ratio,
        "dense_copy_mb": dense_mb,
    }
    out = bench.save(result, f"sparse-fit-memory-{args.label or result['machine']['host']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
