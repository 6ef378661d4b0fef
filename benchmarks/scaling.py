"""How fastmlp's throughput grows with batch size and hidden width, per device.

    python -m benchmarks.scaling --device cpu cuda --data-dir DATA_DIR

Batch sweep: the default net (784-128-64-10) at batch 32 ... 4096, one timed
epoch after a warm-up epoch. Width sweep: 784-W-W-10 for W = 128 ... 4096 at
batch 128, timed on the first ``--width-samples`` training rows (a full epoch of
the widest net would take minutes on a small CPU). Reports samples/s and
GEMM GFLOP/s; writes benchmarks/results/scaling-<label>.json and .png.
"""

from __future__ import annotations

import argparse
import sys
import time

import fastmlp

from . import common


def throughput(device, ds, sizes, batch_size, n_rows, seed=0):
    """(samples/s, GFLOP/s) of one timed epoch over the first n_rows rows, after a warm-up epoch."""
    model = fastmlp.MLP(sizes, device=device, seed=seed)
    trainer = fastmlp.Trainer(model, lr=0.01, batch_size=batch_size, schedule="constant", progress=False, log=None,
                              weight_decay=0.0, warmup=0.0, dropout=0.0)
    x, y = trainer.prepare(ds.x_train[:n_rows], ds.y_train[:n_rows])
    trainer.train_epoch(x, y, 0.01)
    t0 = time.perf_counter()
    trainer.train_epoch(x, y, 0.01)
    seconds = time.perf_counter() - t0
    return n_rows / seconds, common.gemm_flops_per_sample(sizes) * n_rows / seconds / 1e9


def plot(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for device, pts in result["batch"].items():
        left.plot([p["batch_size"] for p in pts], [p["samples_per_s"] for p in pts], "o-", label=device)
    for device, pts in result["width"].items():
        right.plot([p["width"] for p in pts], [p["gflops"] for p in pts], "o-", label=device)
    left.set(xscale="log", xlabel="batch size", ylabel="training samples / s",
             title="784-128-64-10: throughput vs batch size")
    right.set(xscale="log", xlabel="hidden width W (net 784-W-W-10, batch 128)",
              ylabel="GEMM GFLOP/s", title="throughput vs width")
    peak = result.get("cpu_sgemm_peak_gflops")
    if peak:
        right.axhline(peak, color="gray", ls="--", lw=1)
        right.text(right.get_xlim()[0], peak, "  CPU sgemm peak (2048^3)", va="bottom", fontsize=8, color="gray")
        right.set_ylim(0, peak * 1.15)
    from matplotlib.ticker import NullFormatter

    batches = sorted({p["batch_size"] for pts in result["batch"].values() for p in pts})
    widths = sorted({p["width"] for pts in result["width"].values() for p in pts})
    for ax, ticks in ((left, batches), (right, widths)):
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    m = result["machine"]
    fig.suptitle(f"fastmlp scaling on {m['cpu']} ({m['cores']} cores)" + (f", {', '.join(m['gpus'].values())}" if m.get("gpus") else ""), fontsize=10)
    fig.tight_layout()
    fastmlp.io.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-sizes", default="32,64,128,256,512,1024,2048,4096")
    p.add_argument("--widths", default="128,256,512,1024,2048,4096")
    p.add_argument("--width-samples", type=int, default=8192)
    p.add_argument("--label", default=None)
    args = p.parse_args(argv)
    ds = fastmlp.load_mnist(data_dir=args.data_dir)
    result = {"benchmark": "scaling", "when": common.stamp(), "machine": common.machine(args.device),
              "batch": {}, "width": {}, "skipped": {}}
    for device in args.device:
        try:
            name = fastmlp.get_backend(device).name
        except fastmlp.DeviceError as exc:
            result["skipped"][device] = str(exc)
            print(f"skipped {device}: {exc}")
            continue
        for b in map(int, args.batch_sizes.split(",")):
            sps, gf = throughput(device, ds, (784, 128, 64, 10), b, len(ds.x_train))
            result["batch"].setdefault(name, []).append({"batch_size": b, "samples_per_s": sps, "gflops": gf})
            print(f"{name} batch {b:5d}: {sps:12,.0f} samples/s  {gf:7.1f} GFLOP/s")
        for w in map(int, args.widths.split(",")):
            sps, gf = throughput(device, ds, (784, w, w, 10), 128, args.width_samples)
            result["width"].setdefault(name, []).append({"width": w, "samples_per_s": sps, "gflops": gf})
            print(f"{name} width {w:5d}: {sps:12,.0f} samples/s  {gf:7.1f} GFLOP/s")
    if "cpu" in result["batch"]:
        result["cpu_sgemm_peak_gflops"] = common.sgemm_peak()
    path = common.save(result, f"scaling-{args.label or result['machine']['host']}")
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
