"""Saving and loading models as plain ``.npz`` files (never pickle).

A model file holds one array per parameter (``W0``, ``b0``, ``W1``, ...) and a
``meta`` string with JSON: format version, sizes, activation, init, dtype and
the class names. Files are written atomically (temp file in the same folder,
fsync, rename), so an interrupted save never leaves a half-written model.
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


def save(model, path, class_names=None):
    """Write ``model`` to ``path`` (.npz)."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "sizes": list(model.sizes),
        "activation": model.activation.name,
        "init": model.init,
        "dtype": model.dtype.name,
        "class_names": [str(c) for c in class_names] if class_names is not None else None,
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for i, (W, b) in enumerate(model.get_layers()):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path, device=None):
    """Read a model written by :func:`save` onto ``device`` (default: ``$FASTMLP_DEVICE`` or cpu).

    Returns the :class:`~fastmlp.model.MLP`; its ``class_names`` attribute holds the
    saved class names (or None). Anything that is not such a file, including
    ``.npz`` files that would need pickle to load, is a :class:`DataError`.
    """
    from .model import MLP

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such model file") from None
    except ValueError as exc:  # numpy refuses object arrays without pickle
        raise DataError(f"{path}: refused to load ({exc}); fastmlp model files never need pickle") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz model file ({exc})") from None
    try:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT:
            raise KeyError("format")
        sizes = meta["sizes"]
        model = MLP(sizes, meta["activation"], meta["init"], dtype=meta["dtype"], device=device)
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
    return model
