"""benchmarks.memory runs end to end on a tiny dataset (its numbers are not asserted:
the committed results file holds the measurement on the real data)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_idx_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_memory_benchmark_measures_every_case(tmp_path):
    data = make_idx_dataset(tmp_path / "mnist", n_train=300, n_test=100)
    env = {**os.environ, "FASTMLP_BENCH_RESULTS": str(tmp_path / "results"), "MPLBACKEND": "Agg", "FASTMLP_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--data-dir", str(data), "--epochs", "1",
                           "--bomb-gib", "0.0625", "--member-gib", "0.0625", "--label", "t"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "results" / "memory-t.json").read_text())
    outcomes = {r["case"]: r["outcome"] for r in result["results"]}
    assert outcomes.pop("import") == outcomes.pop("load-mnist") == "ok" and outcomes.pop("train-default") == "exit 0"
    assert outcomes.pop("checkpoint-zero-member") == "ok"  # the extra member is never read
    assert len(outcomes) == 5 and all(o.startswith("DataError: ") for o in outcomes.values()), outcomes
    assert all(r["peak_rss_mib"] > 0 for r in result["results"])
