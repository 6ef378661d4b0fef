"""Saving and loading models as plain ``.npz`` files (never pickle).

A model file holds one array per parameter (``W0``, ``b0``, ``W1``, ...) and a
``meta`` string with JSON: format version, sizes, activation, init, dtype, loss
(absent in older files: softmax) and the class names. Files are written
atomically (temp file in the same folder, fsync, rename), so an interrupted
save never leaves a half-written model.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import jsonlimits
from .errors import ConfigError, DataError, one_line
from .files import atomic_write, open_regular
from .zipbudget import Budget, check_directory

FORMAT = "fastmlp-model"
VERSION = 1


def model_arrays(model, class_names=None, extra_meta=None):
    """The arrays of a model file: ``meta`` (JSON) and ``W0``, ``b0``, ... as NumPy."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "sizes": list(model.sizes),
        "activation": model.activation.name,
        "init": model.init,
        "dtype": model.dtype.name,
        "loss": model.loss,
        "class_names": [str(c) for c in class_names] if class_names is not None else None,
        **(extra_meta or {}),
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for i, (W, b) in enumerate(model.get_layers()):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    return arrays


def save(model, path, class_names=None):
    """Write ``model`` to ``path`` (.npz)."""
    arrays = model_arrays(model, class_names)
    atomic_write(path, lambda f: np.savez(f, **arrays))


# A header that claims a longer meta string than this is refused unread (4 bytes a character).
_MAX_META_BYTES = 4 * jsonlimits.MAX_CHARS
# The largest layer a model file may declare (the memory check refuses far smaller ones).
_MAX_LAYER = 2**31 - 1
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
# zipfile raises all of these for damaged, encrypted or unsupported members.
_ZIP_ERRORS = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)


class NpzFile:
    """An ``.npz`` file read one member at a time, without pickle and with checks.

    Only the members asked for are opened. Before anything is decompressed, the
    zip directory's size and each member's declared sizes are checked, and what
    the members read inflate to is counted against a budget a few times the
    file's size on disk (:mod:`fastmlp.zipbudget`). Each member's ``.npy`` header
    is then read and checked (dtype, shape, size against what the zip entry
    holds) before its array is allocated, so a crafted file cannot make fastmlp
    allocate more than what it declares and the caller expects. Everything that
    is wrong is a one-line :class:`DataError` naming the file and the member.
    """

    def __init__(self, path, what="model file"):
        self.path, self.what = Path(path), what
        self._file = open_regular(self.path, what)
        try:
            check_directory(self._file, self.path, what)
            self._zip = zipfile.ZipFile(self._file)
        except _ZIP_ERRORS as exc:
            self._file.close()
            raise DataError(f"{self.path}: not a readable .npz {what} ({one_line(exc)})") from None
        except DataError:
            self._file.close()
            raise
        self.budget = Budget(self.path, what, os.fstat(self._file.fileno()).st_size)
        self.names = {n[: -len(".npy")] for n in self._zip.namelist() if n.endswith(".npy")}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()
        self._file.close()

    def _fail(self, name, problem):
        return DataError(f"{self.path}: member {name!r} has {problem}; this is not a {self.what} fastmlp wrote")

    def _open(self, name):
        info = self._info(name)
        if info.flag_bits & 0x1:
            raise self._fail(name, "encryption (fastmlp never encrypts)")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self._fail(name, f"compression method {info.compress_type} (fastmlp reads stored or deflated members)")
        self.budget.check_member(name, info)
        return info, self._zip.open(info)

    def check_declared(self, expected, by):
        """From the zip directory alone (nothing decompressed): each member of ``expected``
        ({name: (shape, bytes)}) declares at least its bytes, and together they fit the
        budget; ``by`` names what expects them ("the sizes [...]")."""
        total = 0
        for name, (shape, nbytes) in expected.items():
            info = self._info(name)
            self.budget.check_member(name, info)
            if info.file_size < nbytes:
                raise self._fail(name, f"{info.file_size:,} bytes where {by} need shape {shape} ({nbytes:,} bytes)")
            total += info.file_size
        if not self.budget.fits(total):
            raise self.budget.refusal(self.budget.used + total, f"the {len(expected)} arrays {by} need")

    def _info(self, name):
        try:
            return self._zip.getinfo(name + ".npy")
        except KeyError:
            raise DataError(f"{self.path}: not a fastmlp {self.what} (no member {name!r})") from None

    def header(self, name):
        """(shape, dtype) of member ``name``, from its header alone."""
        info, member = self._open(name)
        with member:
            return self._read_header(name, info, member)[:2]

    def _read_header(self, name, info, member):
        try:
            version = np.lib.format.read_magic(member)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = _NPY_HEADER_READERS[version](member)
        except _ZIP_ERRORS as exc:
            raise self._fail(name, f"no readable .npy header ({one_line(exc)})") from None
        if dtype.hasobject:
            raise DataError(
                f"{self.path}: refused to load member {name!r}: it holds Python objects, which would need pickle; "
                "fastmlp files never need pickle"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if member.tell() + nbytes != info.file_size:
            raise self._fail(name, f"{info.file_size - member.tell()} bytes of data where its header says {nbytes}")
        return shape, dtype, fortran, nbytes

    def read(self, name, shape=None, dtype=None, out=None, max_bytes=None):
        """The array in member ``name``, read into ``out`` if given (whose shape and
        dtype it must have), else into a new array of ``shape`` / ``dtype`` when
        given, or whatever its header says if at most ``max_bytes``."""
        if out is not None:
            shape, dtype = out.shape, out.dtype
        info, member = self._open(name)
        with member:
            self.budget.reserve(info.file_size, f"member {name!r}")
            got_shape, got_dtype, fortran, nbytes = self._read_header(name, info, member)
            if dtype is not None and got_dtype != np.dtype(dtype):
                raise self._fail(name, f"dtype {got_dtype} where {np.dtype(dtype)} is expected")
            if shape is not None and got_shape != tuple(shape):
                raise self._fail(name, f"shape {got_shape} where {tuple(shape)} is expected")
            if max_bytes is not None and nbytes > max_bytes:
                raise self._fail(name, f"{nbytes} bytes, more than the {max_bytes} allowed there")
            direct = out is not None and not fortran and out.flags.c_contiguous
            arr = out if direct else np.empty(got_shape[::-1] if fortran else got_shape, dtype=got_dtype)
            body = memoryview(arr.reshape(-1).view(np.uint8))
            try:
                got = 0
                while got < nbytes and (chunk := member.read(min(nbytes - got, 1 << 20))):
                    body[got: got + len(chunk)] = chunk
                    got += len(chunk)
                if got < nbytes or member.read(1):  # reading to the end checks the CRC
                    raise EOFError(f"{got} of {nbytes} bytes")
            except _ZIP_ERRORS as exc:
                raise self._fail(name, f"damaged data ({one_line(exc)})") from None
        arr = arr.T if fortran else arr
        if out is None or direct:
            return arr
        out[...] = arr
        return out

    def meta(self):
        """The JSON object in member ``meta``, as a dict."""
        text = self.read("meta", shape=(), max_bytes=_MAX_META_BYTES)
        if text.dtype.kind != "U":
            raise self._fail("meta", f"dtype {text.dtype} where a string is expected")
        try:
            meta = jsonlimits.loads(str(text))
        except jsonlimits.JSONLimitError as exc:
            raise self._fail("meta", str(exc)) from None
        except ValueError as exc:
            raise self._fail("meta", f"malformed JSON ({one_line(exc)})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{self.path}: not a fastmlp model file (its meta is not a fastmlp header)")
        return meta


def physical_memory() -> int:
    """Bytes of RAM on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(sizes, dtype, copies, error, advice):
    """Raise ``error`` (ending in ``advice``) if ``copies`` copies of the parameters of a
    model of ``sizes`` cannot fit in this machine's memory; checked before allocating."""
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    need = copies * n_params * np.dtype(dtype).itemsize
    have = physical_memory()
    if need > have:
        raise error(
            f"a {'-'.join(map(str, sizes))} model has {n_params:,} parameters and needs about {need / 2**30:,.1f} GiB "
            f"({np.dtype(dtype).name}), more than this machine's {have / 2**30:.1f} GiB of memory; {advice}"
        )


def _check_meta(meta, path):
    """The fields of a model file's meta, type-checked: (sizes, activation, init, dtype, class_names, loss)."""
    from .model import check_sizes

    raw = meta.get("sizes")
    ok = isinstance(raw, list) and all(jsonlimits.count(s, _MAX_LAYER, low=1) for s in raw)
    sizes = check_sizes(raw) if ok and len(raw) >= 2 else None
    names = meta.get("class_names")
    bad = [key for key, ok in (
        ("sizes", sizes is not None),
        ("activation", isinstance(meta.get("activation"), str)),
        ("init", isinstance(meta.get("init"), str)),
        ("dtype", meta.get("dtype") in ("float32", "float64")),
        ("class_names", names is None or isinstance(names, list) and all(isinstance(c, str) for c in names)),
        ("loss", isinstance(meta.get("loss", "softmax"), str)),
    ) if not ok]
    if bad:
        raise DataError(f"{path}: not a fastmlp model file (missing or malformed {', '.join(bad)})")
    return sizes, meta["activation"], meta["init"], meta["dtype"], names, meta.get("loss", "softmax")


def read_model(npz: NpzFile, device=None):
    """(MLP, meta) from an open model file or checkpoint. The parameter members'
    shapes are checked against the sizes in ``meta`` before anything is allocated."""
    from .model import MLP

    meta = npz.meta()
    sizes, activation, init, dtype, class_names, loss = _check_meta(meta, npz.path)
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"W{i}"], shapes[f"b{i}"] = (n_in, n_out), (n_out,)
    itemsize = np.dtype(dtype).itemsize
    npz.check_declared({name: (shape, math.prod(shape) * itemsize) for name, shape in shapes.items()},
                       f"the sizes {list(sizes)}")
    for name, shape in shapes.items():
        found = npz.header(name)[0]
        if found != shape:
            raise npz._fail(name, f"shape {found} where the sizes {list(sizes)} need {shape}")
    if f"W{len(sizes) - 1}" in npz.names:
        raise npz._fail(f"W{len(sizes) - 1}", f"no place in a model of sizes {list(sizes)}")
    check_fits(sizes, dtype, 3, DataError, f"{npz.path} cannot be loaded here")
    try:
        model = MLP(sizes, activation, init, dtype=dtype, device=device, loss=loss)
    except ConfigError as exc:
        raise DataError(f"{npz.path}: not a usable fastmlp model file ({exc})") from None
    # On the CPU the members are read straight into the model's parameters: no second copy.
    on_host = isinstance(model.params, np.ndarray)
    host = model.params if on_host else np.zeros(model.n_params, dtype=model.dtype)
    for i, layer in enumerate(model.views(host)):
        npz.read(f"W{i}", out=layer.W)
        npz.read(f"b{i}", out=layer.b)
    if not on_host:
        model.set_flat_params(host)
    model.class_names = class_names
    return model, meta


def load(path, device=None):
    """Read a model written by :func:`save` (or a training checkpoint) onto ``device``
    (default: ``$FASTMLP_DEVICE`` or cpu).

    Returns the :class:`~fastmlp.model.MLP`; its ``class_names`` attribute holds the
    saved class names (or None). Anything that is not such a file, including
    ``.npz`` files that would need pickle to load, is a :class:`DataError`; only
    the members a model needs are read, and each is checked before it is allocated.
    """
    with NpzFile(path) as npz:
        return read_model(npz, device)[0]
