"""Time full training epochs of fastmlp on each available device.

    python -m benchmarks.epoch --device cpu cuda --epochs 5 --data-dir ../shared/data

For each device: one warm-up epoch (JIT compile is timed separately and
reported), then ``--epochs`` timed epochs of the same net and batch size. Prints
a table (median epoch seconds, samples/s, test accuracy after the run, speed-up
over the CPU) and writes the results with the machine description as JSON
under benchmarks/results/. A device that is not usable here is a skipped row
with the reason, not a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import fastmlp
from fastmlp.io import atomic_write


def machine():
    """CPU model, core count and library versions, for the results file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "fastmlp": fastmlp.__version__,
        "platform": platform.platform(),
    }
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except (TypeError, KeyError):  # older NumPy without mode="dicts"
        pass
    return info


def bench_device(device, ds, sizes, batch_size, epochs, lr, seed):
    """Warm-up epoch + ``epochs`` timed epochs on ``device``; a dict for the results."""
    backend = fastmlp.get_backend(device)
    model = fastmlp.MLP(sizes, device=backend, seed=seed)
    trainer = fastmlp.Trainer(model, lr=lr, batch_size=batch_size, seed=seed, progress=False, log=None)
    x_tr = backend.asarray(ds.x_train)
    y_tr = backend.asarray(ds.y_train)
    compile_s = trainer.fit(x_tr, y_tr, 1)["compile_time"]  # warm-up epoch: compile, allocate, fault in pages
    h = trainer.fit(x_tr, y_tr, epochs)
    times = h["epoch_time"][1:]
    x_te, y_te = backend.asarray(ds.x_test), backend.asarray(ds.y_test, dtype=np.int64)
    loss, acc = fastmlp.evaluate(model, x_te, y_te)
    info = {"device": backend.name, "compile_s": compile_s, "epoch_s": times}
    if backend.is_gpu:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(backend.device_id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cupy"] = cupy.__version__
    median = statistics.median(times)
    info.update(
        median_epoch_s=median,
        samples_per_s=len(ds.x_train) / median,
        test_accuracy=acc,
        test_loss=loss,
        epochs_trained=1 + epochs,
    )
    return info


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--sizes", default="784,128,64,10")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5, help="timed epochs after one warm-up epoch")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/epoch-<host>-<time>.json)")
    args = p.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    ds = fastmlp.load_dataset(args.dataset, data_dir=args.data_dir)

    rows, skipped = [], {}
    for device in args.device:
        try:
            rows.append(bench_device(device, ds, sizes, args.batch_size, args.epochs, args.lr, args.seed))
        except fastmlp.DeviceError as exc:
            skipped[device] = str(exc)
            print(f"skipped {device}: {exc}", file=sys.stderr)

    cpu = next((r for r in rows if r["device"] == "cpu"), None)
    print(f"\n{args.dataset} {'-'.join(map(str, sizes))} relu, batch {args.batch_size}, SGD momentum 0.9, "
          f"median of {args.epochs} epochs after a warm-up epoch")
    print(f"{'device':<10}{'epoch s':>10}{'samples/s':>14}{'test acc':>10}{'compile s':>11}{'vs cpu':>9}")
    for r in rows:
        speedup = f"{cpu['median_epoch_s'] / r['median_epoch_s']:.1f}x" if cpu else "-"
        print(f"{r['device']:<10}{r['median_epoch_s']:>10.3f}{r['samples_per_s']:>14,.0f}"
              f"{100 * r['test_accuracy']:>9.2f}%{r['compile_s']:>11.2f}{speedup:>9}")
    for device, why in skipped.items():
        print(f"{device:<10}skipped: {why}")

    result = {
        "benchmark": "epoch",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": machine(),
        "settings": {"dataset": args.dataset, "sizes": sizes, "batch_size": args.batch_size,
                     "epochs": args.epochs, "lr": args.lr, "optimizer": "momentum 0.9", "seed": args.seed},
        "results": rows,
        "skipped": skipped,
    }
    out = Path(args.out) if args.out else (
        Path(__file__).parent / "results" / f"epoch-{platform.node() or 'host'}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    atomic_write(out, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
