"""Seconds of training until the default recipe reaches a test accuracy, per device.

    python -m benchmarks.time_to_accuracy --device cpu cuda --data-dir ../shared/data

The default recipe of ``python -m fastmlp.train`` (784-128-64-10 ReLU, SGD
momentum 0.9, lr 0.05 cosine over 30 epochs, weight decay 2e-4, batch 128),
with the data already on the device. The clock counts training epochs only
(and the one-time kernel compile, reported apart); the test accuracy is
checked after every epoch, outside the clock. Writes
benchmarks/results/time-to-accuracy-<label>.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import fastmlp
from fastmlp.optim import make_schedule
from fastmlp.train import DEFAULTS

from . import common


def time_to(device, ds, target, max_epochs, seed=0):
    d = DEFAULTS
    model = fastmlp.MLP((784, *d["hidden"], 10), device=device, seed=seed)
    trainer = fastmlp.Trainer(model, optimizer=d["optimizer"], lr=d["lr"], momentum=d["momentum"],
                              weight_decay=d["weight_decay"], batch_size=d["batch_size"], seed=seed,
                              progress=False, log=None)
    x, y = trainer.prepare(ds.x_train, ds.y_train)
    xt, yt = trainer.prepare(ds.x_test, ds.y_test, "test data")
    steps = -(-len(x) // d["batch_size"])
    schedule = make_schedule(d["schedule"], d["lr"], steps * d["epochs"], steps)
    t0 = time.perf_counter()
    trainer.prepare_step(x, y)  # allocate + compile (+ capture on a GPU), timed on its own
    compile_s = time.perf_counter() - t0
    clock, curve = 0.0, []
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        trainer.train_epoch(x, y, schedule)
        clock += time.perf_counter() - t0
        acc = fastmlp.evaluate(model, xt, yt)[1]
        curve.append({"epoch": epoch, "seconds": clock, "test_accuracy": acc})
        if acc >= target:
            return {"device": model.backend.name, "reached": True, "seconds": clock, "epochs": epoch,
                    "compile_s": compile_s, "curve": curve}
    return {"device": model.backend.name, "reached": False, "seconds": clock, "epochs": max_epochs,
            "compile_s": compile_s, "curve": curve}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.time_to_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--label", default=None)
    args = p.parse_args(argv)
    ds = fastmlp.load_mnist(data_dir=args.data_dir)
    result = {"benchmark": "time_to_accuracy", "when": common.stamp(), "machine": common.machine(args.device),
              "target": args.target, "recipe": DEFAULTS, "results": [], "skipped": {}}
    for device in args.device:
        try:
            fastmlp.get_backend(device)
        except fastmlp.DeviceError as exc:
            result["skipped"][device] = str(exc)
            print(f"skipped {device}: {exc}")
            continue
        r = time_to(device, ds, args.target, args.max_epochs)
        result["results"].append(r)
        state = "reached" if r["reached"] else "did NOT reach"
        print(f"{r['device']}: {state} {100 * args.target:.1f}% test accuracy after {r['epochs']} epochs, "
              f"{r['seconds']:.2f} s of training (+{r['compile_s']:.2f} s one-time compile)")
    path = common.save(result, f"time-to-accuracy-{args.label or result['machine']['host']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
