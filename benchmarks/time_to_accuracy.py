"""Seconds of training until a test accuracy is reached: fastmlp's presets, and one recipe on every system.

    python -m benchmarks.time_to_accuracy --device cpu --data-dir DATA_DIR

Two sets of rows, from one run (the clock counts training only; the one-time
compile is reported apart, and every evaluation is outside the clock):

- fastmlp's presets (``--presets``, default ``fast default``), one row per seed:
  the recipe as ``python -m fastmlp.train --preset NAME --target-accuracy T
  --eval-every N`` runs it. The test accuracy is checked every N steps and after
  each epoch, and training stops at the first check that reaches T, so the time
  is not rounded up to whole epochs.
- one recipe on every system (``--systems``: fastmlp, NumPy, PyTorch): the
  peers' fixed recipe (784-128-64-10, constant lr 0.05, momentum 0.9, batch
  128), checked after every epoch (all the peers allow), the systems taking
  turns epoch by epoch so that noise on the machine hits them alike.

fastmlp trains on the uint8 images (scaled on the device, as the CLI does); the
peers on the same images as float32 in [0, 1]. Writes
benchmarks/results/time-to-accuracy-<label>.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import fastmlp
from fastmlp import presets

from . import common, peers

PEER_RECIPE = {"sizes": (784, 128, 64, 10), "batch_size": 128, "lr": 0.05, "momentum": 0.9}


def preset_to_target(device, ds, name, seed, target, every):
    """One fastmlp row: preset ``name`` with ``seed``, stopped at ``target``."""
    values = presets.preset(name)
    model = fastmlp.MLP((ds.n_features, *values["hidden"], ds.n_classes), values["activation"], device=device,
                        seed=seed)
    kwargs = {k: values[k] for k in presets.TRAINER_ARGS if k in values}
    trainer = fastmlp.Trainer(model, **{**kwargs, "seed": seed}, target_accuracy=target, eval_every=every,
                              progress=False, log=None)
    h = trainer.fit(ds.x_train, ds.y_train, values["epochs"], X_test=ds.x_test, y_test=ds.y_test)
    t = h["target"]
    steps = t.get("step") or trainer.step_count
    return {"system": "fastmlp", "recipe": f"--preset {name}", "device": model.backend.name, "seed": seed,
            "reached": t["reached"], "seconds": t.get("train_seconds", float(sum(h["epoch_time"]))), "steps": steps,
            "epochs": steps / h["steps_per_epoch"], "checked_every_steps": every, "compile_s": h["compile_time"],
            "accuracy": t.get("accuracy_reached", h["test_acc"][-1])}


def same_recipe(device, names, raw, ds, target, max_epochs, seed, log=print):
    """Every available system on PEER_RECIPE, epoch by epoch in turns: (rows, skipped)."""
    r = PEER_RECIPE
    systems, skipped = {}, {}
    for name in names:
        try:
            data = raw if name == "fastmlp" else ds
            systems[name] = peers.make(name, device, data, r["sizes"], r["batch_size"], r["lr"], r["momentum"], seed)
        except peers.Unavailable as exc:
            skipped[f"{name} ({device})"] = str(exc)
    if not systems:
        return [], skipped
    compile_s = {}
    for name, system in systems.items():
        if name == "fastmlp":  # compile before the clock, as for the preset rows
            t0 = time.perf_counter()
            system.trainer.prepare_step(system.x, system.y)
            compile_s[name] = time.perf_counter() - t0
    clock = {name: 0.0 for name in systems}
    curves = {name: [] for name in systems}
    open_ = list(systems)
    for epoch in range(1, max_epochs + 1):
        for name in open_[epoch % len(open_):] + open_[: epoch % len(open_)]:
            t0 = time.perf_counter()
            systems[name].epoch()
            clock[name] += time.perf_counter() - t0
            acc = systems[name].accuracy()
            curves[name].append({"epoch": epoch, "seconds": clock[name], "test_accuracy": acc})
            if acc >= target:
                open_.remove(name)
        log(f"  {device} epoch {epoch}: " + ", ".join(f"{n} {curves[n][-1]['test_accuracy']:.4f}" for n in systems))
        if not open_:
            break
    rows = []
    for name, system in systems.items():
        last = curves[name][-1]
        rows.append({"system": system.label, "key": name, "recipe": "same for all: 784-128-64-10, lr 0.05 constant",
                     "device": device, "seed": seed, "reached": last["test_accuracy"] >= target,
                     "seconds": last["seconds"], "epochs": last["epoch"], "compile_s": compile_s.get(name),
                     "accuracy": last["test_accuracy"], "curve": curves[name]})
    return rows, skipped


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.time_to_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--presets", nargs="*", default=["fast", "default"], choices=list(presets.PRESETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--eval-every", type=int, default=50, help="steps between the preset rows' accuracy checks")
    p.add_argument("--systems", nargs="*", default=["fastmlp", "numpy", "torch"], choices=list(peers.SYSTEMS))
    p.add_argument("--max-epochs", type=int, default=20, help="for the same-recipe rows")
    p.add_argument("--label", default=None)
    args = p.parse_args(argv)
    raw, ds = common.load_pixels_and_floats("mnist", args.data_dir)
    result = {"benchmark": "time_to_accuracy", "when": common.stamp(), "target": args.target,
              "presets": {name: presets.as_flags(presets.preset(name)) for name in args.presets},
              "peer_recipe": {**PEER_RECIPE, "sizes": list(PEER_RECIPE["sizes"])}, "results": [], "skipped": {}}
    for device in args.device:
        try:
            fastmlp.get_backend(device)
        except fastmlp.DeviceError as exc:
            result["skipped"][f"fastmlp ({device})"] = str(exc)
            print(f"skipped {device}: {exc}")
            continue
        for name in args.presets:
            for seed in args.seeds:
                r = preset_to_target(device, raw, name, seed, args.target, args.eval_every)
                result["results"].append(r)
                state = "reached" if r["reached"] else "did NOT reach"
                print(f"{r['device']} --preset {name} seed {seed}: {state} {100 * args.target:.1f}% after {r['steps']} "
                      f"steps ({r['epochs']:.2f} epochs), {r['seconds']:.2f} s of training "
                      f"(+{r['compile_s']:.2f} s one-time compile)", flush=True)
    for device in args.device:
        rows, skipped = same_recipe(device, args.systems, raw, ds, args.target, args.max_epochs, args.seeds[0])
        result["results"] += rows
        result["skipped"].update(skipped)
        for r in rows:
            state = "reached" if r["reached"] else "did NOT reach"
            print(f"{r['system']} ({device}), same recipe: {state} {100 * args.target:.1f}% after {r['epochs']} epochs, "
                  f"{r['seconds']:.2f} s of training")
    result["machine"] = common.machine(args.device)  # after the peers ran: their BLAS is loaded too
    path = common.save(result, f"time-to-accuracy-{args.label or result['machine']['host']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
