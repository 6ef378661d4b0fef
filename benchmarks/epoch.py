"""Epoch time of fastmlp beside NumPy, PyTorch and scikit-learn, per device.

    python -m benchmarks.epoch --device cpu cuda --data-dir DATA_DIR

Every system trains the same net (default 784-128-64-10 ReLU) with the same
batch size and SGD with momentum 0.9 on the same MNIST arrays. Each gets one
warm-up epoch (fastmlp's JIT compile is timed on its own and reported), then
its timed epochs. fastmlp's variants are measured first, the other systems
next, and ``torch.compile`` last under its own time cap (``--compile-cap``:
its cold build alone can take a minute or more); the results file is
rewritten after every system, so a run stopped by a time-out keeps what it
measured (``"complete": false`` until the end). The table gives the median
epoch time, samples/s, test accuracy after the run, each system's time as a
ratio to fastmlp's on the same device, and fastmlp's GPU/CPU speed-up.
Missing packages or devices are skipped rows, not crashes. Results go to
benchmarks/results/epoch-<label>.json and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import sys
import threading
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


CAPPED = ("torch-compile",)  # measured last, each under --compile-cap seconds


class OverCap(Exception):
    """A capped system ran past its --compile-cap."""


@contextlib.contextmanager
def time_cap(seconds):
    """Raise OverCap in this (main) thread after ``seconds`` (None: no cap), with SIGALRM:
    torch.compile's cold build is Python code an alarm can interrupt. No-op where there
    is no SIGALRM or off the main thread."""
    if not seconds or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise OverCap(f"over its {seconds:g} s cap")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def order(devices, names):
    """(device, system) in the order they are measured: fastmlp's variants first (on each
    device), then the other systems, the capped ones (torch.compile) last."""
    fast = [n for n in names if n.startswith("fastmlp")]
    last = [n for n in names if n in CAPPED]
    rest = [n for n in names if n not in fast and n not in last]
    return [(d, n) for group in (fast, rest, last) for d in devices for n in group]


def measure(device, name, data, args, log=print):
    """One system on one device: its results row, or raises peers.Unavailable / OverCap.

    One warm-up epoch (timed on its own: the JIT or torch.compile build), then
    ``args.epochs`` timed epochs. A capped system (CAPPED, under ``args.compile_cap``)
    that runs out of its cap after at least one timed epoch keeps those (``capped``
    in the row); before that, it raises OverCap."""
    raw, ds = data
    cap = args.compile_cap if name in CAPPED else None
    t_start = time.perf_counter()
    times, capped = [], False
    try:
        with time_cap(cap):
            system = SYSTEMS[name](device, raw if name == "fastmlp" else ds, args.sizes, args.batch_size, args.lr,
                                   args.momentum, args.seed)
            t0 = time.perf_counter()
            system.epoch()
            first = time.perf_counter() - t0
            for _ in range(args.epochs):
                t0 = time.perf_counter()
                system.epoch()
                times.append(time.perf_counter() - t0)
    except OverCap as exc:
        if not times:
            raise OverCap(f"{exc}: construction and the warm-up epoch (its cold build) took "
                          f"{time.perf_counter() - t_start:.0f} s") from None
        capped = True
    log(f"  {device}: {name}: warm-up epoch {first:.3f} s, then " + ", ".join(f"{t:.3f}" for t in times) + " s"
        + (f" (stopped by its {cap:g} s cap)" if capped else ""))
    n = len(ds.x_train)
    med = statistics.median(times)
    row = {
        "system": system.label,
        "key": name,
        "device": device,
        "median_epoch_s": med,
        "epoch_s": times,
        "first_epoch_s": first,
        "samples_per_s": n / med,
        "test_accuracy": system.accuracy(),
        "epochs_trained": 1 + len(times),
    }
    if capped:
        row["capped"] = f"{len(times)} of {args.epochs} timed epochs within its {cap:g} s cap"
    row.update(system.details() if hasattr(system, "details") else {})  # compile time, graph mode, ...
    if name.startswith("fastmlp"):
        row["gflops"] = common.gemm_flops_per_sample(args.sizes) * n / med / 1e9
    return row


def ratios(rows):
    """Each row's epoch time over fastmlp's (the default trainer) on the same device."""
    base = {r["device"]: r["median_epoch_s"] for r in rows if r["key"] == "fastmlp"}
    for row in rows:
        row["ratio_to_fastmlp"] = row["median_epoch_s"] / base[row["device"]] if row["device"] in base else None
    return rows


def run_device(device, names, data, args, log=print):
    """Every available system on one device, in :func:`order`: (rows, skipped)."""
    rows, skipped = [], {}
    for _, name in order([device], names):
        try:
            rows.append(measure(device, name, data, args, log))
        except (peers.Unavailable, OverCap) as exc:
            skipped[name] = str(exc)
            log(f"  {device}: skipped {name}: {exc}")
    return ratios(rows), skipped


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
    p.add_argument("--compile-cap", type=float, default=None,
                   help="seconds for torch.compile's system (construction, cold build, epochs), measured last; "
                        "past it, the epochs done so far, or a skipped row (default: no cap)")
    args = p.parse_args(argv)
    args.sizes = tuple(int(s) for s in args.sizes.split(","))
    data = common.load_pixels_and_floats(args.dataset, args.data_dir)

    machine = common.machine(args.device)
    peak = common.sgemm_peak()
    label = args.label or machine["host"] or "host"
    rows, skipped = [], {}
    result = {
        "benchmark": "epoch",
        "when": common.stamp(),
        "machine": machine,
        "cpu_sgemm_peak_gflops": peak,
        "settings": {"dataset": args.dataset, "sizes": list(args.sizes), "batch_size": args.batch_size,
                     "epochs": args.epochs, "lr": args.lr, "momentum": args.momentum, "seed": args.seed,
                     "compile_cap_s": args.compile_cap,
                     "fastmlp_input": "uint8 images, scaled on the device", "peer_input": "float32 in [0, 1]"},
        "results": rows,
        "skipped": skipped,
        "complete": False,
    }
    for device, name in order(args.device, args.systems):
        try:
            rows.append(measure(device, name, data, args))
        except (peers.Unavailable, OverCap) as exc:
            skipped[f"{name} ({device})"] = str(exc)
            print(f"  {device}: skipped {name}: {exc}")
        ratios(rows)
        common.save(result, f"epoch-{label}")  # after every system: a time-out keeps what was measured
    result["complete"] = True
    fm = {r["device"]: r for r in rows if r["key"] == "fastmlp"}

    print(f"\n{args.dataset} {'-'.join(map(str, args.sizes))} ReLU, batch {args.batch_size}, SGD momentum "
          f"{args.momentum}; median of {args.epochs} epochs after a warm-up epoch; {machine['cpu']}, {machine['cores']} cores")
    print(f"{'system':<36}{'device':<8}{'epoch s':>9}{'samples/s':>12}{'test acc':>10}{'vs fastmlp':>12}")
    for r in rows:
        acc = f"{100 * r['test_accuracy']:>9.2f}%" if r["test_accuracy"] is not None else f"{'-':>10}"
        print(f"{r['system']:<36}{r['device']:<8}{r['median_epoch_s']:>9.3f}{r['samples_per_s']:>12,.0f}"
              + (f"{acc}{r['ratio_to_fastmlp']:>11.2f}x" if r["ratio_to_fastmlp"] is not None else f"{acc}{'-':>12}"))
    for what, why in skipped.items():
        print(f"{what:<44}skipped: {why}")
    if "cpu" in fm:
        c = fm["cpu"]
        print(f"fastmlp cpu: compile {c.get('compile_s', 0.0):.2f} s (once, cached); {c['gflops']:.1f} GFLOP/s in GEMMs = "
              f"{100 * c['gflops'] / peak:.0f}% of this CPU's float32 matmul peak ({peak:.0f} GFLOP/s, 2048^3)")
    gpus = [d for d in fm if d != "cpu"]
    for d in gpus:
        if "cpu" in fm:
            print(f"fastmlp {d} vs cpu: {fm['cpu']['median_epoch_s'] / fm[d]['median_epoch_s']:.1f}x faster")
    path = common.save(result, f"epoch-{label}")
    if rows:
        plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
