"""Peak memory (RSS) of the default MNIST run, of loading MNIST, and of loading hostile files.

    python -m benchmarks.memory --data-dir DATA_DIR --label cpu-2core

Each case runs in a child process of its own, which reports its peak resident
set size at the end: ``VmHWM`` in ``/proc/self/status``, the high-water mark of
the process's memory since its ``exec``. (``ru_maxrss`` from ``wait4`` would not
do: on Linux a child's starts at what its parent held when it forked.) So no
case sees another's memory, nor the parent's. The cases:

* ``import``: ``import fastmlp`` and nothing else, the floor under every case;
* ``load-mnist``: ``load_mnist`` on the real files, the real dataset's footprint;
* ``train-default``: ``python -m fastmlp.train`` with the default recipe (plots
  included) for ``--epochs`` epochs (default 30, the full default run);
* the hostile files, each loaded the way a user would meet it (``load_mnist``,
  ``fastmlp.load``, ``load_checkpoint`` or the CSV loader), each of which must
  fail with a DataError or, for the checkpoint with an extra member, load without
  reading that member;
* the crafted model, checkpoint and CSV files of benchmarks.hostile: a deflate
  bomb, deflated members at the limit of what fastmlp inflates, deeply nested
  JSON, numbers out of range, and a dense 60 MiB ``train.csv`` (which loads; its
  outcome gives the size of the arrays it produces).

The hostile cases should stay under 2x the ``load-mnist`` footprint; the
results file says for each whether it does, and which is the worst. Writes
benchmarks/results/memory-<label>.json. ``--cases`` measures only some cases
(``import`` and ``load-mnist`` always): the others keep their rows, with the
time they were measured, from the results file already there.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import hostile as crafted

GiB, MiB = 1 << 30, 1 << 20
IDX_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]


def _idx_header(dims):
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


def _zero_members(total):
    """Gzip members that inflate to ``total`` bytes of zeros (64 MiB each, ~64 KB on disk)."""
    member = gzip.compress(bytes(64 * MiB), compresslevel=9)
    return member * max(1, total // (64 * MiB))


def _mnist_folder(data_dir):
    from fastmlp.data import find_data_dir

    return find_data_dir("mnist", data_dir)


def _with_real_files(folder, mnist, replaced):
    """``folder`` holding links to the real MNIST files except ``replaced``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in IDX_NAMES:
        if name != replaced:
            os.symlink(mnist / name, folder / name)
    return folder


def make_hostile(work: Path, mnist: Path, zeros: int, member: int):
    """Create the hostile files under ``work``: {case: (what, how to load it, path)}."""
    from fastmlp.formats import MAX_IDX_BYTES
    from fastmlp.io import model_arrays

    import fastmlp

    cases = {}
    f = _with_real_files(work / "bomb", mnist, IDX_NAMES[0])
    (f / IDX_NAMES[0]).write_bytes(gzip.compress(_idx_header((60000, 28, 28))) + _zero_members(zeros))
    cases["gzip-bomb"] = (f"train-images .gz with MNIST's header (60000x28x28) and {zeros / GiB:g} GiB of zeros "
                          f"after it ({(f / IDX_NAMES[0]).stat().st_size / MiB:.1f} MB on disk)", "mnist", f)

    n = MAX_IDX_BYTES // 784
    f = _with_real_files(work / "bomb-limit", mnist, IDX_NAMES[0])
    (f / IDX_NAMES[0]).write_bytes(gzip.compress(_idx_header((n, 28, 28))) + _zero_members(MAX_IDX_BYTES + 64 * MiB))
    cases["gzip-at-the-limit"] = (f"train-images .gz whose header claims {n}x28x28 (the {MAX_IDX_BYTES // MiB} MiB "
                                  "limit) and whose zeros fill it: the most any IDX file can make fastmlp hold",
                                  "mnist", f)

    f = _with_real_files(work / "sparse", mnist, IDX_NAMES[0])
    n = (40 * 10**9) // 784
    with open(f / IDX_NAMES[0][:-3], "wb") as fh:
        fh.write(_idx_header((n, 28, 28)))
        fh.truncate(16 + n * 784)
    cases["sparse-raw-40GB"] = ("raw train-images, a sparse 40 GB file whose header matches its size", "mnist", f)

    f = work / "csv"
    f.mkdir()
    with open(f / "train.csv", "wb") as fh:
        fh.write(b"label,")
        fh.truncate(GiB - 1)  # sparse: a 1 GiB first line of NUL bytes
    cases["csv-endless-line"] = ("train.csv, a sparse 1 GiB file that is one line", "csv", f)

    model = fastmlp.MLP((784, 128, 64, 10), seed=0)
    arrays = model_arrays(model)
    meta = json.loads(str(arrays["meta"]))
    meta["sizes"] = [784, 10**6, 10**6, 10]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(work / "huge-sizes.npz", **arrays)
    cases["model-huge-sizes"] = ("model file whose meta claims 784-1000000-1000000-10 (4 TB of float32)", "model",
                                 work / "huge-sizes.npz")

    ck = work / "run" / "checkpoint.npz"
    ck.parent.mkdir()
    trainer = fastmlp.Trainer(model, progress=False, log=None)
    from fastmlp.checkpoint import save_checkpoint

    save_checkpoint(ck, trainer)
    with zipfile.ZipFile(ck, "a", zipfile.ZIP_DEFLATED) as z, z.open("junk.npy", "w", force_zip64=True) as m:
        for _ in range(member // (64 * MiB)):
            m.write(bytes(64 * MiB))
    cases["checkpoint-zero-member"] = (f"default-model checkpoint.npz plus a {member / GiB:g} GiB member of zeros "
                                       f"({ck.stat().st_size / MiB:.1f} MB on disk)", "checkpoint", ck)
    return cases


def child(kind, target, data_dir, epochs):
    """The workload of one case, in this (child) process; prints its outcome."""
    import fastmlp

    outcome = "ok"
    try:
        if kind == "import":
            pass
        elif kind == "mnist":
            fastmlp.load_mnist(data_dir=target, download=False)
        elif kind == "csv":
            fastmlp.load_dataset("csv", data_dir=target)
        elif kind == "csv-raw":
            ds = fastmlp.load_dataset("csv", data_dir=target, normalize=False)
            arrays = sum(a.nbytes for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
            outcome = f"ok ({arrays / MiB:.1f} MiB of arrays)"
        elif kind == "model":
            fastmlp.load(target)
        elif kind == "checkpoint":
            from fastmlp.checkpoint import load_checkpoint

            load_checkpoint(target)
        elif kind == "train":
            from fastmlp.train import main

            code = main(["--data-dir", str(data_dir), "--epochs", str(epochs), "--out", str(target), "--quiet"])
            outcome = f"exit {code}"
    except fastmlp.DataError as exc:
        outcome = f"DataError: {exc}"
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    print(json.dumps({"outcome": outcome, "peak_kib": peak_kib}))


def measure(kind, target, data_dir, epochs):
    """(peak RSS in MiB of a child running case ``kind``, its outcome)."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", kind, "--target", str(target),
           "--data-dir", str(data_dir), "--epochs", str(epochs)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1], text=True)
    if proc.returncode:
        raise SystemExit(f"case {kind} {target} failed with exit {proc.returncode}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["peak_kib"] / 1024, report["outcome"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with mnist/ (or the MNIST files)")
    p.add_argument("--epochs", type=int, default=30, help="epochs of the default run (default: all 30)")
    p.add_argument("--bomb-gib", type=float, default=6.0, help="GiB of zeros behind the gzip bomb's header")
    p.add_argument("--member-gib", type=float, default=3.0, help="GiB of zeros in the checkpoint's extra member")
    p.add_argument("--csv-mib", type=int, default=60, help="MiB of the dense train.csv (default 60)")
    p.add_argument("--cases", default=None,
                   help="comma-separated cases to measure (import and load-mnist always are); the others keep "
                        "their rows from the existing results file of this --label")
    p.add_argument("--label", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--target", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.target, args.data_dir, args.epochs)
        return 0

    from . import common

    mnist = _mnist_folder(args.data_dir)
    if mnist is None:
        raise SystemExit("no MNIST files found: pass --data-dir")
    rows, when = [], common.stamp()
    label = args.label or common.machine()["host"]
    chosen = None if args.cases is None else {"import", "load-mnist", *args.cases.split(",")}
    earlier_file = _earlier(common.RESULTS / f"memory-{label}.json")
    earlier = {r["case"]: r for r in earlier_file.get("results", [])}

    def case(name, what, kind, target):
        if chosen is not None and name not in chosen:
            if name not in earlier:
                raise SystemExit(f"case {name} is neither chosen by --cases nor in the results file; measure it too")
            rows.append(earlier[name])
            print(f"{name:28s} {earlier[name]['peak_rss_mib']:8.1f} MiB  (kept, measured {earlier[name]['measured']})")
            return
        peak, outcome = measure(kind, target, mnist, args.epochs)
        rows.append({"case": name, "what": what, "peak_rss_mib": round(peak, 1), "outcome": outcome, "measured": when})
        print(f"{name:28s} {peak:8.1f} MiB  {outcome[:110]}")

    with tempfile.TemporaryDirectory(prefix="fastmlp-memory-") as tmp:
        work = Path(tmp)
        case("import", "import fastmlp, nothing else", "import", work)
        case("load-mnist", f"load_mnist on the real files in {mnist}", "mnist", mnist)
        case("train-default", f"python -m fastmlp.train, default recipe and plots, {args.epochs} epochs", "train",
             work / "train-run")
        hostile = make_hostile(work, mnist, int(args.bomb_gib * GiB), int(args.member_gib * GiB))
        hostile.update(crafted.make(work, args.csv_mib))
        for name, (what, kind, target) in hostile.items():
            case(name, what, kind, target)

    real = next(r["peak_rss_mib"] for r in rows if r["case"] == "load-mnist")
    for r in rows[3:]:
        r["vs_load_mnist"] = round(r["peak_rss_mib"] / real, 2)
        r["under_2x_load_mnist"] = r["peak_rss_mib"] < 2 * real
    worst = max(rows[3:], key=lambda r: r["peak_rss_mib"])
    result = {"benchmark": "memory", "when": when, "machine": common.machine(),
              "method": "each case in its own child process; peak RSS = VmHWM of /proc/self/status at the child's end",
              "epochs_of_default_run": args.epochs if rows[2].get("measured") == when
              else earlier_file.get("epochs_of_default_run"),
              "load_mnist_mib": real, "results": rows,
              "worst_hostile": {"case": worst["case"], "peak_rss_mib": worst["peak_rss_mib"],
                                "vs_load_mnist": worst["vs_load_mnist"],
                                "under_2x_load_mnist": worst["under_2x_load_mnist"]}}
    path = common.save(result, f"memory-{label}")
    print(f"wrote {path}")
    print(f"worst hostile case: {worst['case']} at {worst['peak_rss_mib']} MiB = {worst['vs_load_mnist']}x load-mnist "
          f"({'under' if worst['under_2x_load_mnist'] else 'NOT under'} 2x)")
    return 0


def _earlier(path):
    """An existing results file, each row with when it was measured ({} if there is none)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    earlier["results"] = [{**r, "measured": r.get("measured", earlier.get("when"))} for r in earlier.get("results", [])]
    return earlier


if __name__ == "__main__":
    sys.exit(main())
