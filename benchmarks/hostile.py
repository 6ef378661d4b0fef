"""Crafted model, checkpoint and CSV files for benchmarks.memory: the files that made
fastmlp raise raw exceptions or hold far more memory than they are large.

Each builder writes its file(s) under a folder and returns (what, kind, target):
``kind`` tells benchmarks.memory how a user would meet it (``model``,
``checkpoint``, ``csv-raw``).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

MiB = 1 << 20


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _meta(**changes):
    import fastmlp
    from fastmlp.io import model_arrays

    meta = json.loads(str(model_arrays(fastmlp.MLP((784, 2, 10)))["meta"]))
    meta.update(changes)
    return meta


def deflated_zeros_model(path: Path, hidden: int):
    """A model file of sizes 784-``hidden``-10 whose members are deflated zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("meta.npy", _npy(np.array(json.dumps(_meta(sizes=[784, hidden, 10])))))
        chunk = bytes(16 * MiB)
        for name, shape in (("W0", (784, hidden)), ("b0", (hidden,)), ("W1", (hidden, 10)), ("b1", (10,))):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                f.write(header.getvalue())
                left = 4 * int(np.prod(shape))
                while left > 0:
                    f.write(chunk[:min(left, len(chunk))])
                    left -= len(chunk)
    return path


def _with_meta_text(path: Path, text: str):
    import fastmlp

    W0, b0 = fastmlp.MLP((784, 2), seed=0).get_layers()[0]
    W1, b1 = fastmlp.MLP((2, 10), seed=0).get_layers()[0]
    np.savez(path, meta=np.array(text), W0=W0, b0=b0, W1=W1, b1=b1)
    return path


def dense_csv(path: Path, mib: int):
    """A dense train.csv of about ``mib`` MiB: a label and 784 single-digit pixels per row."""
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
        while f.tell() < mib * MiB:
            np.savetxt(f, rng.integers(0, 10, (1000, 785)), fmt="%d", delimiter=",")
    return path


def make(work: Path, csv_mib: int = 60):
    """Build every case under ``work``: {case: (what, kind, target)}."""
    from fastmlp.zipbudget import FREE_BYTES

    cases = {}
    bomb = deflated_zeros_model(work / "deflate-bomb.npz", 100_000)
    cases["model-deflate-bomb"] = (
        f"model file 784-100000-10 of deflated zeros: {bomb.stat().st_size / MiB:.2f} MB on disk, "
        "318 MB inflated", "model", bomb)
    hidden = (FREE_BYTES - MiB) // (794 * 4)
    limit = deflated_zeros_model(work / "deflate-limit.npz", hidden)
    cases["model-deflated-at-the-limit"] = (
        f"model file 784-{hidden}-10 of deflated zeros ({limit.stat().st_size / MiB:.2f} MB on disk): the most "
        f"compressed members fastmlp inflates ({FREE_BYTES // MiB} MiB)", "model", limit)
    deep = "[" * 200_000 + "]" * 200_000
    text = json.dumps(_meta(sizes=[784, 2, 10]))[:-1] + f', "x": {deep}}}'
    cases["model-deep-json"] = ("model file whose meta nests 200000 arrays deep", "model",
                                _with_meta_text(work / "deep.npz", text))
    text = json.dumps(_meta(sizes="@")).replace('"@"', "[784, 1e400, 10]")
    cases["model-sizes-1e400"] = ("model file whose meta gives a layer size of 1e400", "model",
                                  _with_meta_text(work / "sizes-1e400.npz", text))
    text = json.dumps(_meta(sizes="@")).replace('"@"', f"[784, 1{'0' * 400}, 10]")
    cases["model-sizes-10**400"] = ("model file whose meta gives a layer size of 10**400", "model",
                                    _with_meta_text(work / "sizes-10e400.npz", text))
    cases["checkpoint-counter-1e300"] = ("checkpoint of the 784-128-64-10 model whose optimiser step counter is 1e300",
                                         "checkpoint", _counter_checkpoint(work / "counter" / "checkpoint.npz"))
    folder = work / "csv-dense"
    folder.mkdir()
    size = dense_csv(folder / "train.csv", csv_mib).stat().st_size
    cases[f"csv-dense-{csv_mib}MiB"] = (f"dense train.csv of {size / MiB:.0f} MiB (785 single-digit columns a row), "
                                        "loaded as the command line does (uint8)", "csv-raw", folder)
    return cases


def _counter_checkpoint(path: Path):
    import fastmlp
    from fastmlp.checkpoint import save_checkpoint

    path.parent.mkdir(parents=True)
    save_checkpoint(path, fastmlp.Trainer(fastmlp.MLP((784, 128, 64, 10), seed=0), progress=False, log=None))
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["checkpoint"]["optimizer_counters"]["t"] = "@"
    np.savez(path, meta=np.array(json.dumps(meta).replace('"@"', "1e300")), **arrays)
    return path
