"""PNG figures for a training run: learning curves, confusion matrix, sample grid.

Every function draws on a private :class:`matplotlib.figure.Figure` with the
Agg canvas attached directly, so pyplot is never imported, no GUI backend is
touched and no global matplotlib state changes.  matplotlib itself is imported
only when a figure is drawn, so ``import fastmlp.plots`` stays cheap.

Each PNG is written atomically: it is saved to a hidden temporary file in the
target folder and then moved over ``path`` with :func:`os.replace`, so a
reader never sees a half-written image and a failure leaves no stray file.

Bad arguments raise :class:`ValueError` with a one-line message.  A problem
with the output path (missing folder, path is a folder, folder not writable)
raises :class:`fastmlp.errors.ConfigError`, which is a ``ValueError`` too; a
failed write (disk full, folder removed) raises a one-line
:class:`fastmlp.errors.FastMLPError` and leaves no temp file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from fastmlp.errors import ConfigError
from fastmlp.files import atomic_write

__all__ = ["plot_history", "plot_confusion", "plot_samples", "confusion_matrix"]

DPI = 120

# Colours (matplotlib's default "tab" palette, chosen per role).
_C_TRAIN = "#1f77b4"
_C_TEST = "#d62728"
_C_VAL = "#2ca02c"
_C_RAW = "#9ecae1"
_C_SMOOTH = "#08306b"
_C_WRONG = "#c00000"
_C_RIGHT = "#006400"


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------

def _check_out_path(path) -> str:
    """Return ``path`` as an absolute str, or raise ConfigError if unusable."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise ValueError(
            f"path must be a str or os.PathLike, got {type(path).__name__}"
        ) from None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not p:
        raise ConfigError("output path is empty; give a file name such as 'curves.png'")
    p = os.path.abspath(p)
    parent = os.path.dirname(p)
    if not os.path.isdir(parent):
        raise ConfigError(
            f"output folder {parent!r} does not exist; create it first or choose another path"
        )
    if os.path.isdir(p):
        raise ConfigError(f"output path {p!r} is a folder; give a file name such as 'plot.png'")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {parent!r} is not writable")
    return p


def _labels(a, name: str) -> np.ndarray:
    """Convert to a 1-D int64 label array (integral floats accepted)."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
            raise ValueError(f"{name} must hold whole-number class labels, found non-integers")
    return arr.astype(np.int64, copy=False)


def _label_pair(y_true, y_pred, n_classes: int, allow_empty: bool):
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true and y_pred have different lengths ({t.shape[0]} vs {p.shape[0]})"
        )
    if not allow_empty and t.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty; need at least one sample")
    for arr, name in ((t, "y_true"), (p, "y_pred")):
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= n_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} has label {bad} outside [0, {n_classes}) for {n_classes} classes"
                )
    return t, p


def _n_classes(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n_classes must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n_classes must be at least 1, got {n}")
    return int(n)


def _class_names(class_names) -> list[str]:
    if isinstance(class_names, (str, bytes)) or not isinstance(
        class_names, (Sequence, np.ndarray)
    ):
        raise ValueError("class_names must be a list of names, one per class")
    names = [str(c) for c in class_names]
    if not names:
        raise ValueError("class_names is empty; need one name per class")
    return names


# ---------------------------------------------------------------------------
# Figure plumbing
# ---------------------------------------------------------------------------

def _new_figure(figsize, layout="constrained"):
    # A bare Figure is not registered with pyplot, so it is freed as soon as
    # the caller drops it; there is nothing to close.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save_atomic(fig, path: str) -> None:
    """Save ``fig`` as PNG to ``path`` via a temp file in the same folder."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, facecolor="white"))


# ---------------------------------------------------------------------------
# confusion_matrix
# ---------------------------------------------------------------------------

def confusion_matrix(y_true, y_pred, n_classes) -> np.ndarray:
    """Count matrix ``C`` with ``C[i, j]`` = samples of true class i predicted as j.

    Returns a ``(n_classes, n_classes)`` int64 array (rows = true label,
    columns = predicted label).  Labels must be 1-D integer arrays of equal
    length with values in ``[0, n_classes)``; whole-number floats are accepted.
    Empty inputs give an all-zero matrix.
    """
    k = _n_classes(n_classes)
    t, p = _label_pair(y_true, y_pred, k, allow_empty=True)
    counts = np.bincount(t * k + p, minlength=k * k)
    return counts.reshape(k, k).astype(np.int64, copy=False)


# ---------------------------------------------------------------------------
# plot_history
# ---------------------------------------------------------------------------

def _floats(raw, key: str) -> np.ndarray:
    """1-D float64 array from a list/array of numbers; None becomes NaN."""
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"history[{key!r}] must be a list of numbers") from None
    if arr.ndim != 1:
        raise ValueError(f"history[{key!r}] must be 1-D, got shape {arr.shape}")
    return arr


def _series(history, key: str, n: int | None, required: bool):
    """Float array for ``history[key]`` (None -> NaN), or None if absent/all-None."""
    if key not in history or history[key] is None:
        if required:
            raise ValueError(f"history is missing key {key!r}")
        return None
    arr = _floats(history[key], key)
    if n is not None and arr.size != n:
        if not required and arr.size == 0:
            return None
        raise ValueError(
            f"history[{key!r}] has {arr.size} values but history['epoch'] has {n}"
        )
    if not required and not np.any(np.isfinite(arr)):
        return None
    return arr


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that shrinks at the ends and skips NaN/inf."""
    ok = np.isfinite(y)
    c_val = np.concatenate(([0.0], np.cumsum(np.where(ok, y, 0.0))))
    c_cnt = np.concatenate(([0], np.cumsum(ok)))
    h = window // 2
    idx = np.arange(y.size)
    lo = np.clip(idx - h, 0, y.size)
    hi = np.clip(idx + h + 1, 0, y.size)
    cnt = c_cnt[hi] - c_cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (c_val[hi] - c_val[lo]) / cnt
    out[cnt == 0] = np.nan
    return out


def _fmt_pct(v: float) -> str:
    return f"{v:.2f}%"


def plot_history(history, path, title=None) -> None:
    """Draw learning curves to a PNG at ``path``.

    Left panel, "Training loss per iteration": the raw per-mini-batch loss
    (thin, light) with a centred moving average on top, x = iterations done.
    The y axis is logarithmic when the positive loss spans more than 1.5
    decades.  Epoch boundaries are marked by faint vertical lines (up to 40
    epochs) and by an "epochs" axis along the top.  Per-epoch mean training
    loss and validation loss, when present, are drawn as markers.

    Right panel, "Accuracy per epoch": train, test and (if present)
    validation accuracy in percent, with the y range zoomed to the data and
    the final test accuracy annotated.

    ``history`` keys: ``iter_loss`` (1-D), ``steps_per_epoch`` (int),
    ``epoch``, ``train_loss``, ``train_acc``, ``test_acc`` (per-epoch lists,
    accuracies as fractions in [0, 1]); optional ``val_acc``/``val_loss``
    (lists that may contain None).  ``train_loss`` and ``steps_per_epoch``
    may be omitted.  Works from a single iteration to hundreds of epochs.
    """
    if not isinstance(history, Mapping):
        raise ValueError(f"history must be a dict, got {type(history).__name__}")
    out = _check_out_path(path)

    if "iter_loss" not in history:
        raise ValueError("history is missing key 'iter_loss'")
    loss = _floats(history["iter_loss"], "iter_loss")

    epochs = _series(history, "epoch", None, required=True)
    n_ep = epochs.size
    if loss.size == 0 and n_ep == 0:
        raise ValueError("history is empty: no iterations and no epochs recorded")
    if n_ep and not np.all(np.isfinite(epochs)):
        raise ValueError("history['epoch'] must hold epoch numbers, found None/NaN")
    train_acc = _series(history, "train_acc", n_ep, required=True)
    test_acc = _series(history, "test_acc", n_ep, required=True)
    val_acc = _series(history, "val_acc", n_ep, required=False)
    train_loss = _series(history, "train_loss", n_ep, required=False)
    val_loss = _series(history, "val_loss", n_ep, required=False)
    for arr, key in ((train_acc, "train_acc"), (test_acc, "test_acc"), (val_acc, "val_acc")):
        if arr is not None and np.any(arr[np.isfinite(arr)] > 1.0 + 1e-9):
            raise ValueError(f"history[{key!r}] has values above 1; pass fractions in [0, 1]")
        if arr is not None and np.any(arr[np.isfinite(arr)] < 0.0):
            raise ValueError(f"history[{key!r}] has negative values; pass fractions in [0, 1]")

    steps = history.get("steps_per_epoch")
    if steps is None and n_ep and loss.size % n_ep == 0 and loss.size:
        steps = loss.size // n_ep
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(
                f"history['steps_per_epoch'] must be a positive int, got {steps!r}"
            )
        steps = int(steps)

    fig = _new_figure((12.5, 4.8))
    ax_l, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1.0]})
    _draw_loss_panel(ax_l, loss, steps, n_ep, train_loss, val_loss)
    _draw_acc_panel(ax_r, epochs, train_acc, test_acc, val_acc)
    if title:
        fig.suptitle(str(title), fontsize=13, fontweight="bold")
    _save_atomic(fig, out)


def _draw_loss_panel(ax, loss, steps, n_ep, train_loss, val_loss):
    from matplotlib.ticker import MaxNLocator

    n = loss.size
    ax.set_title("Training loss per iteration", fontsize=12)
    ax.set_xlabel("iteration (mini-batch)")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", alpha=0.3)
    if n == 0:
        ax.text(0.5, 0.5, "no iterations recorded", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return

    it = np.arange(1, n + 1)
    few = n <= 60
    ax.plot(it, loss, color=_C_RAW, lw=0.6 if not few else 1.0,
            marker="o" if few else None, ms=5 if n <= 10 else 3, label="per iteration",
            zorder=2)
    window = 0
    if n >= 20:
        window = int(np.clip(n // 30, 5, 2001)) | 1  # odd width
        ax.plot(it, _moving_average(loss, window), color=_C_SMOOTH, lw=1.8,
                label=f"moving average ({window} iters)", zorder=3)

    # Per-epoch values on the iteration axis: markers for up to 60 epochs,
    # plain lines beyond that (markers would merge into a smear).
    ep_marks = bool(n_ep) and n_ep <= 60
    if steps is not None and n_ep:
        x_end = steps * np.arange(1, n_ep + 1)
        ms = 5 if ep_marks else 0
        if train_loss is not None:
            ax.plot(x_end - steps / 2, train_loss, ls="none" if ep_marks else "-",
                    marker="s", ms=ms, color="#ff7f0e", mec="black", mew=0.5,
                    label="epoch mean", zorder=4)
        if val_loss is not None:
            ax.plot(x_end, val_loss, ls="--" if not ep_marks else ":", lw=1.2,
                    marker="D", ms=ms, color=_C_VAL, mec="black", mew=0.5,
                    label="validation (epoch end)", zorder=4)

    # Log scale if the positive, finite loss spans more than 1.5 decades.
    fin = loss[np.isfinite(loss)]
    if fin.size and np.all(fin > 0) and fin.max() / fin.min() > 10 ** 1.5:
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
        ax.grid(True, which="minor", alpha=0.12)

    right = max(n, steps * n_ep if steps and n_ep else 0)
    # A small margin so markers at the last iteration are not cut in half.
    ax.set_xlim(0, right + max(0.5, 0.015 * right))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))

    if steps is not None and right > 0:
        total_ep = right / steps
        if total_ep <= 40:
            for e in range(1, int(math.floor(total_ep)) + 1):
                if e * steps < right:
                    ax.axvline(e * steps, color="0.55", lw=0.7, ls="--", alpha=0.6, zorder=1)
        top = ax.secondary_xaxis(
            "top", functions=(lambda x, s=steps: x / s, lambda e, s=steps: e * s)
        )
        top.set_xlabel("epochs completed", fontsize=9, color="0.3")
        top.xaxis.set_major_locator(MaxNLocator(nbins=min(11, max(2, int(total_ep) + 1)),
                                                integer=True))
        top.tick_params(labelsize=8, colors="0.3")

    ax.legend(loc="upper right", fontsize=8.5, framealpha=0.85)


def _draw_acc_panel(ax, epochs, train_acc, test_acc, val_acc):
    from matplotlib.ticker import MaxNLocator

    ax.set_title("Accuracy per epoch", fontsize=12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    n_ep = epochs.size
    if n_ep == 0:
        ax.text(0.5, 0.5, "no completed epoch yet", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return

    marker = n_ep <= 40
    series = [("train", train_acc, _C_TRAIN, "o"), ("test", test_acc, _C_TEST, "s")]
    if val_acc is not None:
        series.append(("validation", val_acc, _C_VAL, "D"))
    all_vals = []
    for name, arr, color, mk in series:
        pct = arr * 100.0
        fin = pct[np.isfinite(pct)]
        all_vals.append(fin)
        label = f"{name} (final {_fmt_pct(fin[-1])})" if fin.size else name
        ax.plot(epochs, pct, color=color, lw=1.6, marker=mk if marker else None,
                ms=5 if n_ep <= 15 else 3.5, label=label, zorder=3)

    vals = np.concatenate(all_vals) if all_vals else np.array([])
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        span = max(hi - lo, 2.0)          # never zoom in below a 2-point range
        pad = 0.12 * span
        bottom = max(0.0, lo - pad)
        top = min(100.0 + 0.25 * pad, hi + pad)
        if top - bottom < 2.0:
            bottom = max(0.0, top - 2.0)
        ax.set_ylim(bottom, top)

    lo_x, hi_x = float(epochs.min()), float(epochs.max())
    margin = max(0.5, 0.03 * (hi_x - lo_x))
    ax.set_xlim(lo_x - margin, hi_x + margin)
    if n_ep <= 15 and np.all(epochs == np.round(epochs)):
        ax.set_xticks(np.unique(epochs))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))

    # Annotate the final finite test accuracy.
    pct = test_acc * 100.0
    ok = np.flatnonzero(np.isfinite(pct))
    if ok.size:
        i = ok[-1]
        x, y = float(epochs[i]), float(pct[i])
        ax.plot([x], [y], marker="o", ms=11, mfc="none", mec=_C_TEST, mew=1.6, zorder=4)
        ymin, ymax = ax.get_ylim()
        # Put the label below the point unless the point sits low in the panel.
        below = (y - ymin) > 0.3 * (ymax - ymin)
        ax.annotate(
            f"test {_fmt_pct(y)}",
            xy=(x, y), xytext=(-8, -26 if below else 22), textcoords="offset points",
            ha="right", va="center", fontsize=10, fontweight="bold", color=_C_TEST,
            bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=_C_TEST, lw=0.8, alpha=0.9),
            arrowprops=dict(arrowstyle="-", color=_C_TEST, lw=0.8),
            zorder=5,
        )
    # "best" avoids the curves and the annotation text.
    ax.legend(loc="best", fontsize=9, framealpha=0.9)


# ---------------------------------------------------------------------------
# plot_confusion
# ---------------------------------------------------------------------------

def plot_confusion(y_true, y_pred, class_names, path, title=None) -> np.ndarray:
    """Draw a confusion-matrix heat map to a PNG and return the matrix.

    Rows are true labels, columns predicted labels; ``len(class_names)``
    sets the number of classes k.  Cell colour is the row-normalised fraction
    (share of that true class), cell text is the raw count (zeros in light
    grey); the title gives the overall accuracy.  Returns the ``(k, k)``
    int64 count matrix that was drawn.  Labels must be non-empty 1-D integer
    arrays of equal length with values in ``[0, k)``.  For k > 40 the counts
    are too small to print and only the colours are drawn.
    """
    names = _class_names(class_names)
    k = len(names)
    t, p = _label_pair(y_true, y_pred, k, allow_empty=False)
    out = _check_out_path(path)
    cm = confusion_matrix(t, p, k)

    from matplotlib.colors import Normalize

    n = int(cm.sum())
    correct = int(np.trace(cm))
    acc_line = f"accuracy {100.0 * correct / n:.2f}%  ({correct:,} / {n:,} correct)"
    head = str(title) if title else "Confusion matrix"

    row = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row, out=np.zeros(cm.shape, dtype=np.float64), where=row > 0)

    longest = max(len(s) for s in names)
    rotate = k > 3 and longest > 3 or longest > 12
    cell_in = float(np.clip(6.0 / k, 0.16, 0.62))
    label_in = min(longest, 24) * 0.085 + 0.3
    side = cell_in * k
    fig = _new_figure((side + label_in + 2.0, side + (label_in * 0.75 if rotate else 0.3) + 1.4))
    ax = fig.subplots()
    cmap = "Blues"
    norm = Normalize(vmin=0.0, vmax=1.0)
    im = ax.imshow(frac, cmap=cmap, norm=norm, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label("fraction of true class (row-normalised)", fontsize=9)
    cbar.ax.tick_params(labelsize=8)

    tick_fs = float(np.clip(cell_in * 72 * 0.42, 6, 10))
    ax.set_xticks(np.arange(k))
    ax.set_yticks(np.arange(k))
    ax.set_xticklabels(names, fontsize=tick_fs)
    ax.set_yticklabels(names, fontsize=tick_fs)
    if rotate:
        for lab in ax.get_xticklabels():
            lab.set_rotation(40)
            lab.set_ha("right")
            lab.set_rotation_mode("anchor")
    ax.set_xlabel("Predicted label", fontsize=11)
    ax.set_ylabel("True label", fontsize=11)
    ax.set_title(f"{head}\n{acc_line}", fontsize=12)
    # Thin white grid between cells.
    # (two line collections: far cheaper than k minor ticks per axis)
    edges = np.arange(k + 1) - 0.5
    ax.hlines(edges, -0.5, k - 0.5, colors="white", lw=0.8)
    ax.vlines(edges, -0.5, k - 0.5, colors="white", lw=0.8)
    ax.tick_params(which="major", length=2)

    if k <= 40:
        digits = len(str(int(cm.max())))
        cell_pt = cell_in * 72
        fs = min(11.0, 0.45 * cell_pt, 0.85 * cell_pt / (0.62 * max(digits, 1)))
        if fs >= 4.5:
            cmap_obj = im.get_cmap()
            for i in range(k):
                for j in range(k):
                    c = int(cm[i, j])
                    if c == 0:
                        color = "0.65"
                    else:
                        r, g, b, _ = cmap_obj(norm(frac[i, j]))
                        lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
                        color = "white" if lum < 0.5 else "black"
                    ax.text(j, i, str(c), ha="center", va="center", fontsize=fs,
                            color=color, fontweight="bold" if i == j else "normal",
                            in_layout=False)
    _save_atomic(fig, out)
    return cm


# ---------------------------------------------------------------------------
# plot_samples
# ---------------------------------------------------------------------------

def _short(name: str, limit: int = 12) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def _pick_samples(t: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """Indices to show: first mistakes (up to half, at least one), then first correct.

    If there are too few correct samples to fill ``min(n, len(t))`` slots,
    further mistakes fill the rest.  Order within each group is input order.
    """
    m = min(n, t.size)
    wrong = np.flatnonzero(t != p)
    right = np.flatnonzero(t == p)
    n_wrong = min(wrong.size, max(1, m // 2)) if wrong.size else 0
    n_right = min(right.size, m - n_wrong)
    n_wrong = min(wrong.size, m - n_right)
    return np.concatenate((wrong[:n_wrong], right[:n_right])).astype(np.int64)


def plot_samples(images, y_true, y_pred, class_names, path, n=36, title=None) -> None:
    """Draw a grid of up to ``n`` images with their true and predicted class.

    ``images`` may be ``(N, H, W)``, ``(N, H, W, 1)`` or flattened ``(N, F)``;
    uint8 or float.  A flattened row is reshaped to a square when F is a
    perfect square (784 -> 28x28); otherwise it is drawn as a 1xF strip
    (one column per feature), so any feature count works.  All images share
    one grey scale: 0..255 for integer input, the data's min..max otherwise.

    Which samples are shown: if some of the given samples are misclassified,
    up to half of the grid (at least one) is filled with the first
    misclassified ones, in input order, followed by the first correctly
    classified ones; if there are too few correct ones, more mistakes fill the
    rest.  With no mistakes the first ``n`` samples are shown.  Each panel is
    titled "true → predicted"; the title is red for a mistake and dark green
    for a correct prediction.
    """
    names = _class_names(class_names)
    k = len(names)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    imgs = np.asarray(images)
    if imgs.dtype == bool:
        imgs = imgs.astype(np.uint8)
    if not (np.issubdtype(imgs.dtype, np.integer) or np.issubdtype(imgs.dtype, np.floating)):
        raise ValueError(f"images must be numeric (uint8 or float), got dtype {imgs.dtype}")
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    if imgs.ndim not in (2, 3):
        raise ValueError(
            f"images must have shape (N, F), (N, H, W) or (N, H, W, 1), got {imgs.shape}"
        )
    if imgs.shape[0] == 0 or imgs[0].size == 0:
        raise ValueError(f"images is empty (shape {imgs.shape}); need at least one image")
    t, p = _label_pair(y_true, y_pred, k, allow_empty=False)
    if t.shape[0] != imgs.shape[0]:
        raise ValueError(
            f"images has {imgs.shape[0]} samples but y_true/y_pred have {t.shape[0]}"
        )
    out = _check_out_path(path)

    order = _pick_samples(t, p, int(n))
    m = order.size
    n_wrong = int(np.count_nonzero(t[order] != p[order]))

    # --- image geometry ---
    strip = False
    if imgs.ndim == 2:
        f = imgs.shape[1]
        s = math.isqrt(f)
        if s * s == f:
            shown = imgs[order].reshape(-1, s, s)
        else:
            shown = imgs[order].reshape(-1, 1, f)
            strip = True
    else:
        shown = imgs[order]

    if np.issubdtype(shown.dtype, np.integer):
        vmin, vmax = 0.0, 255.0 if shown.max() > 1 else 1.0
        if shown.min() < 0:
            vmin, vmax = float(shown.min()), float(shown.max())
    else:
        fin = shown[np.isfinite(shown)]
        vmin, vmax = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
        if 0.0 <= vmin and vmax <= 1.0:
            vmin, vmax = 0.0, 1.0
    if vmax <= vmin:
        vmax = vmin + 1.0

    # --- layout, in inches (manual: much faster than constrained layout
    # for dozens of axes, and the sizes are known up front) ---
    cols = max(1, math.ceil(math.sqrt(m)))
    rows = math.ceil(m / cols)
    longest = max(len(_short(names[i])) for i in np.concatenate((t[order], p[order])))
    two_line = longest > 5
    img_w = 1.3 if two_line else 1.1
    img_h = img_w * (0.45 if strip else 1.0)
    gap_x, margin = 0.16, 0.12
    title_h = 0.44 if two_line else 0.26
    grid_w = cols * img_w + (cols - 1) * gap_x

    head = str(title) if title else "Sample predictions"
    parts = [f"{m} sample{'s' if m != 1 else ''}, title = true \u2192 predicted",
             ("all misclassified (red)" if n_wrong == m else
              f"{n_wrong} misclassified (red), shown first" if n_wrong else
              "none misclassified")]

    def text_w(line, fs=11.0):  # rough width in inches of DejaVu Sans text
        return len(line) * fs * 0.58 / 72

    sub = "; ".join(parts)
    if text_w(sub) > max(grid_w, 4.0):
        sub = "\n".join(parts)
    lines = [head] + sub.split("\n")
    fig_w = max(grid_w + 2 * margin, max(text_w(x) for x in lines) + 0.3, 2.5)
    sup_h = 0.12 + 0.21 * len(lines)
    fig_h = sup_h + rows * (title_h + img_h) + (rows - 1) * 0.06 + margin

    fig = _new_figure((fig_w, fig_h), layout=None)
    left = (fig_w - grid_w) / 2 / fig_w
    axes = fig.subplots(
        rows, cols, squeeze=False,
        gridspec_kw=dict(
            left=left, right=1 - left,
            top=1 - (sup_h + title_h) / fig_h, bottom=margin / fig_h,
            wspace=gap_x / img_w, hspace=(title_h + 0.06) / img_h,
        ),
    ).ravel()
    for ax in axes[m:]:
        ax.set_axis_off()
    for pos, (ax, i) in enumerate(zip(axes, order)):
        ax.imshow(shown[pos], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest",
                  aspect="auto")
        ok = t[i] == p[i]
        tn, pn = _short(names[t[i]]), _short(names[p[i]])
        label = f"{tn}\n\u2192 {pn}" if two_line else f"{tn} \u2192 {pn}"
        ax.set_title(label, fontsize=9, color=_C_RIGHT if ok else _C_WRONG,
                     fontweight="normal" if ok else "bold", pad=3, linespacing=1.1)
        ax.set_xticks([])
        ax.set_yticks([])
        # A coloured frame makes mistakes findable at a glance.
        for sp in ax.spines.values():
            sp.set_color(_C_RIGHT if ok else _C_WRONG)
            sp.set_linewidth(0.6 if ok else 2.0)
    fig.suptitle(f"{head}\n{sub}", fontsize=11, y=1 - 0.08 / fig_h, va="top",
                 linespacing=1.3)
    _save_atomic(fig, out)
