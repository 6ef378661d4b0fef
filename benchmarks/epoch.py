"""Epoch time of fastmlp beside NumPy, PyTorch and scikit-learn, per device.

    python -m benchmarks.epoch --device cpu cuda --data-dir ../shared/data

Every system trains the same net (default 784-128-64-10 ReLU) with the same
batch size and SGD with momentum 0.9 on the same MNIST arrays. Each gets one
warm-up epoch (fastmlp's JIT compile is timed on its own and reported), then
the timed epochs run in rounds, one epoch per system per round in rotating
order, so that noise on the machine hits every system alike. The table gives
the median epoch time, samples/s, test accuracy after the run, each system's
time as a ratio to fastmlp's on the same device, and fastmlp's GPU/CPU
speed-up. Missing packages or devices are skipped rows, not crashes. Results
go to benchmarks/results/epoch-<label>.json and .png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import fastmlp

from . import common, peers


class GemmOnly:
    """fastmlp's epoch with nothing but its matrix multiplies (same shapes, order, BLAS
    and threads): the floor an epoch cannot go below with this BLAS."""

    label = "GEMMs alone"

    def __init__(self, device, ds, sizes, batch_size, lr, momentum, seed):
        if device != "cpu":
            raise peers.Unavailable("the GEMM-only floor is measured for the CPU's BLAS")
        self.model = fastmlp.MLP(sizes, seed=seed, device="cpu")
        self.ws, self.batch = self.model.workspace(batch_size), batch_size
        self.steps = -(-len(ds.x_train) // batch_size)

    def epoch(self):
        common.gemm_only_epoch(self.model, self.ws, self.steps, self.batch)

    def accuracy(self):
        return None


SYSTEMS = {**peers.SYSTEMS, "gemm": GemmOnly}


def run_device(device, names, data, args, log=print):
    """Timed epochs of every available system on one device: (rows, skipped).

    data: (uint8 dataset for fastmlp, float32 dataset for the others)."""
    raw, ds = data
    systems, skipped = {}, {}
    for name in names:
        try:
            systems[name] = SYSTEMS[name](device, raw if name == "fastmlp" else ds, args.sizes, args.batch_size,
                                          args.lr, args.momentum, args.seed)
        except peers.Unavailable as exc:
            skipped[name] = str(exc)
            log(f"  {device}: skipped {name}: {exc}")
    if not systems:
        return [], skipped
    first = {}
    for name, system in systems.items():
        t0 = time.perf_counter()
        system.epoch()
        first[name] = time.perf_counter() - t0
    times = {name: [] for name in systems}
    order = list(systems)
    for r in range(args.epochs):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.perf_counter()
            systems[name].epoch()
            times[name].append(time.perf_counter() - t0)
        log(f"  {device}: round {r + 1}/{args.epochs}: " + ", ".join(f"{n} {times[n][-1]:.3f} s" for n in order))
    n = len(ds.x_train)
    rows = []
    for name, system in systems.items():
        med = statistics.median(times[name])
        row = {
            "system": system.label,
            "key": name,
            "device": device,
            "median_epoch_s": med,
            "epoch_s": times[name],
            "first_epoch_s": first[name],
            "samples_per_s": n / med,
            "test_accuracy": system.accuracy(),
            "epochs_trained": 1 + args.epochs,
        }
        row.update(system.details() if hasattr(system, "details") else {})  # compile time, graph mode, ...
        if name.startswith("fastmlp"):
            row["gflops"] = common.gemm_flops_per_sample(args.sizes) * n / med / 1e9
        rows.append(row)
    base = next((r for r in rows if r["key"] == "fastmlp"), None)
    for row in rows:
        row["ratio_to_fastmlp"] = row["median_epoch_s"] / base["median_epoch_s"] if base else None
    return rows, skipped


def plot(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["results"]
    fig = Figure(figsize=(8, 0.5 * len(rows) + 1.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels = [f"{r['system']} ({r['device']})" for r in rows]
    values = [r["median_epoch_s"] for r in rows]
    colors = ["#d62728" if r["key"] == "fastmlp" else "#7f7f7f" for r in rows]
    y = range(len(rows))
    ax.barh(y, values, color=colors)
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("median seconds per epoch (shorter is faster)")
    for i, r in enumerate(rows):
        ratio = r["ratio_to_fastmlp"]
        text = f" {r['median_epoch_s']:.3g} s" + (f"  ({ratio:.2f}x fastmlp)" if ratio and r["key"] != "fastmlp" else "")
        ax.text(r["median_epoch_s"], i, text, va="center", fontsize=8)
    s = result["settings"]
    ax.set_title(
        f"MNIST epoch, {'-'.join(map(str, s['sizes']))} ReLU, batch {s['batch_size']}, SGD momentum {s['momentum']}\n"
        f"{result['machine']['cpu']} ({result['machine']['cores']} cores)",
        fontsize=9,
    )
    ax.set_xlim(0, max(values) * 1.6)
    fig.tight_layout()
    fastmlp.io.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.epoch", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--sizes", default="784,128,64,10")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per system after one warm-up epoch")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default=None, help="results file name suffix (default: host name)")
    args = p.parse_args(argv)
    args.sizes = tuple(int(s) for s in args.sizes.split(","))
    data = common.load_pixels_and_floats(args.dataset, args.data_dir)

    rows, skipped = [], {}
    for device in args.device:
        r, s = run_device(device, args.systems, data, args)
        rows += r
        skipped.update({f"{k} ({device})": v for k, v in s.items()})
    machine = common.machine(args.device)
    peak = common.sgemm_peak()
    fm = {r["device"]: r for r in rows if r["key"] == "fastmlp"}
    result = {
        "benchmark": "epoch",
        "when": common.stamp(),
        "machine": machine,
        "cpu_sgemm_peak_gflops": peak,
        "settings": {"dataset": args.dataset, "sizes": list(args.sizes), "batch_size": args.batch_size,
                     "epochs": args.epochs, "lr": args.lr, "momentum": args.momentum, "seed": args.seed,
                     "fastmlp_input": "uint8 images, scaled on the device", "peer_input": "float32 in [0, 1]"},
        "results": rows,
        "skipped": skipped,
    }

    print(f"\n{args.dataset} {'-'.join(map(str, args.sizes))} ReLU, batch {args.batch_size}, SGD momentum "
          f"{args.momentum}; median of {args.epochs} epochs after a warm-up epoch; {machine['cpu']}, {machine['cores']} cores")
    print(f"{'system':<36}{'device':<8}{'epoch s':>9}{'samples/s':>12}{'test acc':>10}{'vs fastmlp':>12}")
    for r in rows:
        acc = f"{100 * r['test_accuracy']:>9.2f}%" if r["test_accuracy"] is not None else f"{'-':>10}"
        print(f"{r['system']:<36}{r['device']:<8}{r['median_epoch_s']:>9.3f}{r['samples_per_s']:>12,.0f}"
              f"{acc}{r['ratio_to_fastmlp']:>11.2f}x")
    for what, why in skipped.items():
        print(f"{what:<44}skipped: {why}")
    if "cpu" in fm:
        c = fm["cpu"]
        print(f"fastmlp cpu: compile {c['compile_s']:.2f} s (once, cached); {c['gflops']:.1f} GFLOP/s in GEMMs = "
              f"{100 * c['gflops'] / peak:.0f}% of this CPU's float32 matmul peak ({peak:.0f} GFLOP/s, 2048^3)")
    gpus = [d for d in fm if d != "cpu"]
    for d in gpus:
        if "cpu" in fm:
            print(f"fastmlp {d} vs cpu: {fm['cpu']['median_epoch_s'] / fm[d]['median_epoch_s']:.1f}x faster")
    label = args.label or machine["host"] or "host"
    path = common.save(result, f"epoch-{label}")
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
