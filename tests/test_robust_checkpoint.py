"""Crafted model and checkpoint files: only DataError, only the members needed are read,
shapes are checked before anything is allocated, and the loss of every step is binary."""

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import DataError
from fastmlp.checkpoint import NAME, load_checkpoint, restore, save_checkpoint

MiB = 1 << 20


def _trainer(optimizer="momentum", epochs=2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    trainer = fastmlp.Trainer(fastmlp.MLP((6, 5, 2), seed=0), optimizer=optimizer, lr=0.05, batch_size=10,
                              progress=False, log=None)
    trainer.fit(x, y, epochs)
    return trainer


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """The members of a valid checkpoint: {name: array}, with meta decoded."""
    path = tmp_path_factory.mktemp("ck") / NAME
    save_checkpoint(path, _trainer(), {"epochs": 2}, ["a", "b"], {"location": "/data"})
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def _write(path, meta, arrays):
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _load_and_restore(path):
    model, ck, opt = load_checkpoint(path)
    trainer = fastmlp.Trainer(model, optimizer="momentum", progress=False, log=None)  # as the run's settings say
    restore(trainer, ck, opt)


def _ck(change):
    def edit(meta, arrays):
        change(meta["checkpoint"])
    return edit


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _drop(key):
    return lambda d: d.pop(key)


EDITS = {
    "meta-is-a-list": lambda m, a: (m.clear(), m.update(dict(format="fastmlp-model", x=[1]))),
    "checkpoint-is-a-list": lambda m, a: m.__setitem__("checkpoint", [1, 2]),
    "checkpoint-is-null": lambda m, a: m.__setitem__("checkpoint", None),
    "optimizer-is-a-number": _ck(_set("optimizer", 5)),
    "optimizer-unknown": _ck(_set("optimizer", "adamw")),
    "counters-is-a-list": _ck(_set("optimizer_counters", [1])),
    "counter-is-text": _ck(_set("optimizer_counters", {"t": "x"})),
    "counter-is-infinite": _ck(_set("optimizer_counters", {"t": float("inf")})),
    "counters-missing": _ck(_drop("optimizer_counters")),
    "epochs-negative": _ck(_set("epochs_done", -1)),
    "epochs-text": _ck(_set("epochs_done", "2")),
    "epochs-bool": _ck(_set("epochs_done", True)),
    "epochs-fraction": _ck(_set("epochs_done", 1.5)),
    "epochs-beyond-history": _ck(_set("epochs_done", 3)),
    "steps-negative": _ck(_set("step_count", -5)),
    "steps-huge": _ck(_set("step_count", 10**15)),
    "history-is-a-list": _ck(_set("history", [])),
    "history-epoch-text": _ck(lambda c: c["history"].__setitem__("epoch", "x")),
    "history-short": _ck(lambda c: c["history"].__setitem__("train_loss", [])),
    "history-nested": _ck(lambda c: c["history"].__setitem__("lr", [[1], [2]])),
    "settings-is-a-list": _ck(_set("settings", [])),
    "data-is-a-number": _ck(_set("data", 5)),
    "no-step-losses": lambda m, a: a.pop("history.iter_loss"),
    "step-losses-short": lambda m, a: a.__setitem__("history.iter_loss", np.zeros(3)),
    "step-losses-text": lambda m, a: a.__setitem__("history.iter_loss", np.array(["x"] * 8)),
    "no-velocity": lambda m, a: a.pop("opt.velocity"),
    "velocity-wrong-shape": lambda m, a: a.__setitem__("opt.velocity", np.zeros(3, np.float32)),
    "velocity-wrong-dtype": lambda m, a: a.__setitem__("opt.velocity", a["opt.velocity"].astype(np.float64)),
    "sizes-one": lambda m, a: m.__setitem__("sizes", [6]),
    "sizes-text": lambda m, a: m.__setitem__("sizes", "6,5,2"),
    "sizes-negative": lambda m, a: m.__setitem__("sizes", [6, -5, 2]),
    "sizes-float": lambda m, a: m.__setitem__("sizes", [6, 1e20, 2]),
    "sizes-huge": lambda m, a: m.__setitem__("sizes", [6, 10**11, 2]),
    "activation-number": lambda m, a: m.__setitem__("activation", 5),
    "activation-unknown": lambda m, a: m.__setitem__("activation", "swish"),
    "dtype-float16": lambda m, a: m.__setitem__("dtype", "float16"),
    "class-names-numbers": lambda m, a: m.__setitem__("class_names", [1, 2]),
    "format-other": lambda m, a: m.__setitem__("format", "other"),
    "no-W0": lambda m, a: a.pop("W0"),
    "W0-int": lambda m, a: a.__setitem__("W0", a["W0"].astype(np.int64)),
    "W0-object": lambda m, a: a.__setitem__("W0", np.array([{"a": 1}], dtype=object)),
    "extra-layer": lambda m, a: a.__setitem__("W2", np.zeros((2, 2), np.float32)),
}


@pytest.mark.parametrize("edit", EDITS)
def test_edited_checkpoints_are_one_data_error(tmp_path, good, edit):
    meta, arrays = json.loads(json.dumps(good[0])), dict(good[1])
    EDITS[edit](meta, arrays)
    path = _write(tmp_path / NAME, meta, arrays)
    with pytest.raises(DataError) as excinfo:
        _load_and_restore(path)
    assert "\n" not in str(excinfo.value)


def _zip_bytes(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return bytearray(buf.getvalue())


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _patch_central(raw, name, offset, fmt, value):
    """Change a field of ``name``'s central-directory entry (and its local header)."""
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        n = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46: at + 46 + n] == name.encode():
            struct.pack_into(fmt, raw, at + offset, value)
            local = struct.unpack_from("<I", raw, at + 42)[0]
            struct.pack_into(fmt, raw, local + offset - 2, value)
            return raw
        at = raw.find(b"PK\x01\x02", at + 4)
    raise AssertionError(name)


def _model_members():
    model = fastmlp.MLP((3, 2))
    meta = dict(format="fastmlp-model", version=1, sizes=[3, 2], activation="relu", init="he", dtype="float32",
                class_names=None)
    W, b = model.get_layers()[0]
    return {"meta.npy": _npy(np.array(json.dumps(meta))), "W0.npy": _npy(W), "b0.npy": _npy(b)}


CRAFTED = {
    "bare-npy": lambda: _npy(np.zeros(3)),
    "member-not-npy": lambda: _zip_bytes({"meta": b"{}", "W0": b"x"}),
    "meta-not-npy": lambda: _zip_bytes({**_model_members(), "meta.npy": b"not an npy file"}),
    "meta-not-text": lambda: _zip_bytes({**_model_members(), "meta.npy": _npy(np.zeros(2))}),
    "meta-bad-json": lambda: _zip_bytes({**_model_members(), "meta.npy": _npy(np.array("{oops"))}),
    "meta-a-list": lambda: _zip_bytes({**_model_members(), "meta.npy": _npy(np.array("[1, 2]"))}),
    "encrypted-member": lambda: _patch_central(_zip_bytes(_model_members()), "W0.npy", 8, "<H", 1),
    "unknown-compression": lambda: _patch_central(_zip_bytes(_model_members()), "W0.npy", 10, "<H", 99),
    "bzip2-member": lambda: _zip_bytes(_model_members(), zipfile.ZIP_BZIP2),
    "truncated-member": lambda: _zip_bytes({**_model_members(), "W0.npy": _model_members()["W0.npy"][:-4]}),
    "npy-version-3": lambda: _zip_bytes({**_model_members(), "W0.npy": b"\x93NUMPY\x03\x00" + b"\0" * 20}),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_model_files_are_one_data_error(tmp_path, case):
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(CRAFTED[case]()))
    with pytest.raises(DataError) as excinfo:
        fastmlp.load(path)
    assert str(path) in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_a_well_formed_hand_made_model_file_loads(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(_zip_bytes(_model_members(), zipfile.ZIP_DEFLATED)))
    assert fastmlp.load(path).sizes == (3, 2)


def _peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_model_file_claiming_huge_sizes_allocates_nothing(tmp_path):
    model = fastmlp.MLP((3, 2))
    arrays = fastmlp.io.model_arrays(model)
    meta = json.loads(str(arrays["meta"]))
    meta["sizes"] = [3, 10**6, 10**6, 2]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "m.npz", **arrays)

    def load():
        with pytest.raises(DataError, match="W0.*need"):
            fastmlp.load(tmp_path / "m.npz")

    assert _peak(load)[1] < MiB


def test_a_huge_extra_member_is_never_read(tmp_path):
    trainer = _trainer()
    path = tmp_path / NAME
    save_checkpoint(path, trainer)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        with z.open("junk.npy", "w", force_zip64=True) as f:
            for _ in range(256):
                f.write(bytes(MiB))  # 256 MiB of zeros, ~256 KB on disk
    (model, ck, opt), peak = _peak(lambda: load_checkpoint(path))
    assert peak < 4 * MiB, f"{peak / MiB:.0f} MiB held"
    assert np.array_equal(model.params, trainer.model.params) and ck["epochs_done"] == 2


def test_a_fifo_named_checkpoint_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / NAME)
    code = ("from fastmlp.checkpoint import load_checkpoint\nfrom fastmlp import DataError\n"
            f"try:\n load_checkpoint({str(tmp_path / NAME)!r})\nexcept DataError as e:\n print(e)")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("load_checkpoint blocked on a FIFO")
    assert "is a FIFO (named pipe), not a regular file" in out.stdout, out


def test_step_losses_are_a_binary_array_not_json(tmp_path):
    trainer = _trainer(epochs=3)
    save_checkpoint(tmp_path / NAME, trainer)
    with np.load(tmp_path / NAME) as f:
        meta = str(f["meta"])
        losses = f["history.iter_loss"]
    assert "iter_loss" not in meta
    assert losses.dtype == np.float64 and losses.tolist() == trainer.history["iter_loss"]
    _, ck, _ = load_checkpoint(tmp_path / NAME)
    assert ck["history"]["iter_loss"] == trainer.history["iter_loss"]
