"""benchmarks.epoch: fastmlp's variants first, torch.compile last under its own cap,
the results file rewritten after every system. Stand-in systems, no timing asserted."""

import functools
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import common, epoch  # noqa: E402


class Fake:
    """A system that notes which rows the results file held when it was built."""

    seen = []

    def __init__(self, device, ds, sizes, batch_size, lr, momentum, seed, key="", build_s=0.0, epoch_s=0.0):
        path = common.RESULTS / "epoch-t.json"
        held = [r["key"] for r in json.loads(path.read_text())["results"]] if path.exists() else []
        Fake.seen.append((key, device, held))
        self.label, self.epoch_s = key, epoch_s
        time.sleep(build_s)

    def epoch(self):
        time.sleep(self.epoch_s)

    def accuracy(self):
        return None


def test_order_and_results_after_every_system_and_the_cap(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    ds = SimpleNamespace(x_train=np.zeros((10, 4)))
    monkeypatch.setattr(common, "load_pixels_and_floats", lambda *a: (ds, ds))
    monkeypatch.setattr(common, "sgemm_peak", lambda: 1.0)
    monkeypatch.setattr(common, "machine", lambda devices: {"host": "t", "cpu": "cpu", "cores": 1})
    monkeypatch.setattr(common, "gemm_flops_per_sample", lambda sizes: 1.0)
    monkeypatch.setattr(epoch, "plot", lambda result, path: None)
    systems = {"torch-compile": functools.partial(Fake, key="torch-compile", epoch_s=0.4),
               "torch": functools.partial(Fake, key="torch"),
               "fastmlp": functools.partial(Fake, key="fastmlp"),
               "fastmlp-eager": functools.partial(Fake, key="fastmlp-eager")}
    monkeypatch.setattr(epoch, "SYSTEMS", systems)
    Fake.seen = []
    argv = ["--device", "cpu", "--systems", *systems, "--epochs", "3", "--label", "t", "--compile-cap", "1"]
    assert epoch.main(argv) == 0
    assert [k for k, _, _ in Fake.seen] == ["fastmlp", "fastmlp-eager", "torch", "torch-compile"]
    assert [held for _, _, held in Fake.seen] == [[], ["fastmlp"], ["fastmlp", "fastmlp-eager"],
                                                  ["fastmlp", "fastmlp-eager", "torch"]]
    result = json.loads((tmp_path / "epoch-t.json").read_text())
    assert result["complete"] and result["settings"]["compile_cap_s"] == 1
    rows = {r["key"]: r for r in result["results"]}
    # warm-up 0.4 s, then timed epochs of 0.4 s until the 1 s cap: fewer than asked, kept and said so
    assert "within its 1 s cap" in rows["torch-compile"]["capped"] and len(rows["torch-compile"]["epoch_s"]) < 3
    assert rows["fastmlp"]["ratio_to_fastmlp"] == 1 and "capped" not in rows["torch"]

    # a cold build past the cap: a skipped row saying so, the others kept
    systems["torch-compile"] = functools.partial(Fake, key="torch-compile", build_s=3)
    assert epoch.main(argv) == 0
    result = json.loads((tmp_path / "epoch-t.json").read_text())
    assert "over its 1 s cap" in result["skipped"]["torch-compile (cpu)"]
    assert [r["key"] for r in result["results"]] == ["fastmlp", "fastmlp-eager", "torch"]


def test_order_puts_fastmlp_first_on_every_device_and_the_capped_last():
    names = ["torch-compile", "torch", "fastmlp", "numpy", "fastmlp-graph"]
    assert epoch.order(["cuda", "cpu"], names) == [
        ("cuda", "fastmlp"), ("cuda", "fastmlp-graph"), ("cpu", "fastmlp"), ("cpu", "fastmlp-graph"),
        ("cuda", "torch"), ("cuda", "numpy"), ("cpu", "torch"), ("cpu", "numpy"),
        ("cuda", "torch-compile"), ("cpu", "torch-compile")]
