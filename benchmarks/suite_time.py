"""How long the test suite takes on this machine: the README's test command, timed.

    python -m benchmarks.suite_time --label cpu-2core [--cold] [-- PYTEST ARGS]

Runs ``pytest -n auto`` (or the arguments after ``--``) in a child process from
the repository root and records its wall time, pytest's summary line and the
machine in benchmarks/results/suite-time-<label or host>.json. ``--cold`` points
Numba's kernel cache at a new empty folder first, so kernel compilation counts
as it does on a fresh clone. Tests that need the real data files run only when
FASTMLP_DATA_DIR names them, as in the suite itself; the result records it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common as bench

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    pytest_args = ["-n", "auto"]
    if "--" in argv:
        at = argv.index("--")
        argv, pytest_args = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(prog="python -m benchmarks.suite_time", description=__doc__.split("\n\n")[0])
    p.add_argument("--cold", action="store_true", help="an empty Numba cache, as on a fresh clone")
    p.add_argument("--label", default=None, help="results file suffix (default: host name)")
    args = p.parse_args(argv)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if args.cold:
            env["NUMBA_CACHE_DIR"] = cache
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args]
        load = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    summary = lines[-1].strip("= ") if lines else ""
    print("\n".join(ln for ln in lines if ln.startswith(("FAILED", "ERROR"))) or "(no failures)")
    print(summary)
    print(f"{seconds:.1f} s wall, exit status {proc.returncode}")
    result = {
        "benchmark": "suite_time",
        "when": bench.stamp(),
        "machine": bench.machine(),
        "command": "pytest " + " ".join(pytest_args),
        "numba_cache": "empty (cold)" if args.cold else "as found (warm)",
        "real_data": bool(env.get("FASTMLP_DATA_DIR")),
        "wall_s": seconds,
        "exit_status": proc.returncode,
        "summary": summary,
        "failed": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))],
        "load_average_before": list(load),
    }
    out = bench.save(result, f"suite-time-{args.label or result['machine']['host']}")
    print(f"wrote {out}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
