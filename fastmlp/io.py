"""Saving and loading models as plain ``.npz`` files (never pickle).

A model file holds one array per parameter (``W0``, ``b0``, ``W1``, ...) and a
``meta`` string with JSON: format version, sizes, activation, init, dtype and
the class names. Files are written atomically (temp file in the same folder,
fsync, rename), so an interrupted save never leaves a half-written model.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import atomic_write

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
        model = MLP(meta["sizes"], meta["activation"], meta["init"], dtype=meta["dtype"], device=device)
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
