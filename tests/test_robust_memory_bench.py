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
                           "--bomb-gib", "0.0625", "--member-gib", "0.0625", "--csv-mib", "2", "--label", "t"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "results" / "memory-t.json").read_text())
    outcomes = {r["case"]: r["outcome"] for r in result["results"]}
    assert outcomes.pop("import") == outcomes.pop("load-mnist") == "ok" and outcomes.pop("train-default") == "exit 0"
    assert outcomes.pop("checkpoint-zero-member") == "ok"  # the extra member is never read
    assert outcomes.pop("model-deflated-at-the-limit") == "ok"  # within what fastmlp inflates
    assert outcomes.pop("csv-dense-2MiB").startswith("ok (")  # it loads; the outcome gives its arrays' size
    assert "compression bomb" in outcomes["model-deflate-bomb"]
    assert len(outcomes) == 10 and all(o.startswith("DataError: ") for o in outcomes.values()), outcomes
    assert all(r["peak_rss_mib"] > 0 for r in result["results"])
    assert result["worst_hostile"]["case"] in {r["case"] for r in result["results"][3:]}

    # --cases measures only those (and import, load-mnist); the other rows are kept as they were
    before = {r["case"]: r for r in result["results"]}
    again = subprocess.run([*proc.args, "--cases", "model-deflate-bomb"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    after = json.loads((tmp_path / "results" / "memory-t.json").read_text())
    rows = {r["case"]: r for r in after["results"]}
    assert list(rows) == list(before)
    assert rows["train-default"] == before["train-default"] and rows["gzip-bomb"]["measured"] == before["gzip-bomb"]["measured"]
    assert rows["model-deflate-bomb"]["measured"] == after["when"] and after["epochs_of_default_run"] == 1
