"""Saving and loading models as plain ``.npz`` files (never pickle).

A model file holds one array per parameter (``W0``, ``b0``, ``W1``, ...) and a
``meta`` string with JSON: format version, sizes, activation, init, dtype, loss
(absent in older files: softmax) and the class names. Files are written
atomically (temp file in the same folder, fsync, rename), so an interrupted
save never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError, FastMLPError

FORMAT = "fastmlp-model"
VERSION = 1


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename it
    over ``path``. On any error the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise FastMLPError(f"cannot write {path}: {exc.strerror or exc}; choose a writable output folder") from None
    try:
        # mkstemp makes the file 0600; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise FastMLPError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(p):
    try:
        os.unlink(p)
    except OSError:
        pass


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


def read_npz(path, what="model file"):
    """All arrays of an ``.npz`` file, read without pickle: {name: array}.

    A missing, truncated or foreign file, or one that would need pickle, is a
    one-line :class:`DataError` naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}") from None
    except ValueError as exc:  # numpy refuses object arrays without pickle
        raise DataError(f"{path}: refused to load ({exc}); fastmlp files never need pickle") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz {what} ({exc})") from None


def model_from_arrays(data, path, device=None):
    """(MLP, meta) from the arrays of a model file; malformed contents are a DataError."""
    from .model import MLP

    try:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT:
            raise KeyError("format")
        model = MLP(meta["sizes"], meta["activation"], meta["init"], dtype=meta["dtype"], device=device,
                    loss=meta.get("loss", "softmax"))
        host = np.zeros(model.n_params, dtype=model.dtype)
        for i, layer in enumerate(model.views(host)):
            for name, dst in ((f"W{i}", layer.W), (f"b{i}", layer.b)):
                if data[name].shape != dst.shape:
                    raise ValueError(f"{name} of shape {data[name].shape}, expected {dst.shape}")
                dst[...] = data[name]
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a fastmlp model file (missing or malformed {exc})") from None
    model.set_flat_params(host)
    model.class_names = meta.get("class_names")
    return model, meta


def load(path, device=None):
    """Read a model written by :func:`save` (or a training checkpoint) onto ``device``
    (default: ``$FASTMLP_DEVICE`` or cpu).

    Returns the :class:`~fastmlp.model.MLP`; its ``class_names`` attribute holds the
    saved class names (or None). Anything that is not such a file, including
    ``.npz`` files that would need pickle to load, is a :class:`DataError`.
    """
    return model_from_arrays(read_npz(path), Path(path), device)[0]
