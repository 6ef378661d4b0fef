"""The training loop: one code path for every device.

Everything the loop touches lives on the model's device and is allocated
before the first step: the training set, the batch and activation buffers
(:class:`~fastmlp.model.Workspace`), the flat gradient buffer, the optimiser
state and the per-step losses. Each epoch draws a permutation on the device,
gathers batches with it, and reads the losses back once, at the end of the
epoch, so a GPU never waits for the host inside an epoch.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from .errors import ConfigError, divergence_error
from .optim import make_optimizer, make_schedule


def _check_xy(model, X, y, what):
    """Features and labels as the model needs them, or a ConfigError naming ``what``."""
    xp = model.xp
    if X.ndim != 2:
        raise ConfigError(f"{what} features must be a 2-D array (n, {model.sizes[0]}), got shape {tuple(X.shape)}")
    if X.shape[1] != model.sizes[0]:
        raise ConfigError(
            f"{what} rows have {X.shape[1]} features but sizes start with {model.sizes[0]}; "
            f"make the first size {X.shape[1]}"
        )
    if y.shape != (X.shape[0],):
        raise ConfigError(f"{what} has {X.shape[0]} rows but labels of shape {tuple(y.shape)}; give one integer label per row")
    if X.shape[0] == 0:
        raise ConfigError(f"{what} is empty")
    if not bool(xp.isfinite(X).all()):
        raise ConfigError(f"{what} features contain NaN or inf; clean or impute them first")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= model.sizes[-1]:
        raise ConfigError(
            f"{what} labels span {lo}..{hi} but the model has {model.sizes[-1]} outputs (classes 0..{model.sizes[-1] - 1}); "
            "make the last size the number of classes"
        )


def _epoch_seed(seed, epoch):
    """A 32-bit seed for one epoch's shuffle, derived from (seed, epoch)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class _EpochBuffers(NamedTuple):
    n: int  # rows in the training set
    batch: int  # batch size (<= n)
    steps: int  # batches per epoch, the last one possibly shorter
    rows: np.ndarray  # (steps,) rows in each batch, host
    ws: object  # Workspace for the batch size
    step_loss: object  # (steps,) device buffer: summed loss of each step


class Trainer:
    """Mini-batch training of an :class:`~fastmlp.model.MLP` with a fused loss kernel.

    optimizer: 'sgd' | 'momentum' | 'nesterov' | 'adam'; schedule: 'constant' | 'step' | 'cosine'.
    """

    def __init__(
        self,
        model,
        optimizer="momentum",
        lr=0.05,
        momentum=0.9,
        weight_decay=0.0,
        batch_size=128,
        schedule="cosine",
        seed=0,
        progress=True,
        log=print,
    ):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"learning rate must be a positive number, got {lr!r}")
        self.model = model
        self.backend = model.backend
        self.optimizer = make_optimizer(optimizer, model, momentum=momentum, weight_decay=weight_decay)
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.schedule_name = schedule
        self.batch_size = int(batch_size)
        self.seed = seed
        self.progress = progress
        self.log = log or (lambda *_: None)
        self.grads = model.xp.zeros_like(model.params)
        self.grad_layers = model.views(self.grads)
        self._buf = None
        self.history = {
            "epoch": [],
            "train_loss": [],
            "train_acc": [],
            "test_acc": [],
            "val_acc": [],
            "val_loss": [],
            "epoch_time": [],
            "samples_per_s": [],
            "lr": [],
            "iter_loss": [],
            "steps_per_epoch": 0,
        }
        self.epochs_done = 0
        self.step_count = 0

    def prepare(self, X, y, what="training data"):
        """X, y copied to the device (once) in the model's dtype and checked."""
        bk, m = self.backend, self.model
        X = bk.asarray(X, dtype=m.dtype)
        y = bk.asarray(y, dtype=np.int64)
        _check_xy(m, X, y, what)
        return X, y

    def fit(self, X, y, epochs, X_test=None, y_test=None, X_val=None, y_val=None, permutations=None,
            total_epochs=None, on_epoch=None):
        """Train for ``epochs`` more epochs; returns the history dict.

        X (n, d0) float, y (n,) int labels, host or device arrays (copied to the
        device once). ``permutations``, if given, is a list of host index arrays
        to use as the batch order of each epoch instead of the device RNG (for
        parity tests between devices). The schedule spans ``total_epochs``
        (default: the epochs done so far plus these), so a resumed run follows
        the same learning rates as an uninterrupted one. ``on_epoch(trainer)`` is
        called after every completed epoch (checkpoints).
        """
        if int(epochs) != epochs or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        if permutations is not None and len(permutations) < epochs:
            raise ConfigError(f"{len(permutations)} permutations given for {epochs} epochs; give one per epoch")
        X, y = self.prepare(X, y)
        evals = {}
        for name, (Xe, ye) in {"test": (X_test, y_test), "val": (X_val, y_val)}.items():
            if Xe is not None:
                evals[name] = self.prepare(Xe, ye, f"{name} data")
        n = X.shape[0]
        steps = self._buffers(n).steps
        total = total_epochs or self.epochs_done + int(epochs)
        schedule = make_schedule(self.schedule_name, self.lr, steps * total, steps)
        for i in range(int(epochs)):
            epoch = self.epochs_done + 1
            lr_epoch = schedule(self.step_count)
            bar = self._bar(steps, epoch)
            self.backend.synchronize()
            t0 = time.perf_counter()
            losses = self.train_epoch(X, y, schedule, None if permutations is None else permutations[i], bar)
            elapsed = time.perf_counter() - t0
            if bar is not None:
                bar.close()
            self._record(epoch, losses, self._buffers(n).rows, elapsed, n, lr_epoch, X, y, evals)
            if on_epoch is not None:
                on_epoch(self)
        return self.history

    def train_epoch(self, X, y, lr, permutation=None, bar=None):
        """One pass over X, y (device arrays from :meth:`prepare`) in mini-batches.

        ``lr`` is a number or a function of the global step count. The batch order
        is a permutation drawn on the device from (seed, epoch), so an epoch can be
        replayed without saving any RNG state; ``permutation`` (host indices)
        overrides it. Returns the mean loss of each step as a host float64 array,
        read back once, at the end; a non-finite loss is a DivergenceError.
        """
        m, bk, xp = self.model, self.backend, self.model.xp
        n = X.shape[0]
        buf = self._buffers(n)
        ws, B, step_loss = buf.ws, buf.batch, buf.step_loss
        lr_at = lr if callable(lr) else (lambda _step, value=float(lr): value)
        epoch = self.epochs_done + 1
        if permutation is not None:
            perm = bk.asarray(permutation, dtype=np.int64)
        else:
            perm = bk.permutation(bk.rng(_epoch_seed(self.seed, epoch)), n)
        for s in range(buf.steps):
            idx = perm[s * B : (s + 1) * B]
            k = idx.shape[0]
            xb = bk.gather(X, idx, ws.x[:k])
            yb = bk.gather(y, idx, ws.y[:k])
            row_loss = m.loss_and_grad(xb, yb, ws, self.grad_layers)
            xp.sum(row_loss, keepdims=True, out=step_loss[s : s + 1])
            self.optimizer.step(self.grads, lr_at(self.step_count))
            self.step_count += 1
            if bar is not None:
                bar.update(1)
        losses = bk.to_host(step_loss).astype(np.float64) / buf.rows  # the one sync of the epoch
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise divergence_error(self, epoch, losses, bad[0], lr_at(self.step_count - buf.steps + bad[0]))
        self.epochs_done = epoch
        return losses

    def _buffers(self, n):
        """Workspace, per-step loss buffer and step sizes for a training set of n rows,
        allocated on first use and reused by every later epoch."""
        if self._buf is None or self._buf.n != n:
            B = min(self.batch_size, n)
            steps = -(-n // B)
            rows = np.full(steps, B, dtype=np.float64)
            rows[-1] = n - B * (steps - 1)
            ws = self.model.workspace(B)
            self._buf = _EpochBuffers(n, B, steps, rows, ws, self.model.xp.zeros(steps, dtype=self.model.dtype))
            self.history["steps_per_epoch"] = steps
            self._warm_up(ws)
        return self._buf

    def _warm_up(self, ws):
        """Compile the kernels (or load them from Numba's cache) before the first
        timed epoch, on one row of zeros, so epoch times measure training only."""
        t0 = time.perf_counter()
        self.model.loss_and_grad(ws.x[:1], ws.y[:1], ws, self.grad_layers)
        self.optimizer.warm_up()
        self.backend.synchronize()
        seconds = time.perf_counter() - t0
        self.history["compile_time"] = seconds
        if seconds > 0.5:
            self.log(f"compiled kernels in {seconds:.1f} s (cached for later runs)")

    def _bar(self, steps, epoch):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        # disable=None: tqdm turns itself off when stderr is not a terminal.
        return tqdm(total=steps, desc=f"epoch {epoch}", unit="batch", leave=False, disable=None)

    def _record(self, epoch, losses, rows, elapsed, n, lr, X, y, evals):
        h = self.history
        train_loss = float((losses * rows).sum() / rows.sum())
        h["epoch"].append(epoch)
        h["train_loss"].append(train_loss)
        h["iter_loss"].extend(losses.tolist())
        h["epoch_time"].append(elapsed)
        h["samples_per_s"].append(n / elapsed)
        h["lr"].append(lr)
        h["train_acc"].append(evaluate(self.model, X, y)[1])
        test = evaluate(self.model, *evals["test"]) if "test" in evals else (None, None)
        val = evaluate(self.model, *evals["val"]) if "val" in evals else (None, None)
        h["test_acc"].append(test[1])
        h["val_loss"].append(val[0])
        h["val_acc"].append(val[1])
        parts = [
            f"epoch {epoch:3d}",
            f"loss {train_loss:.4f}",
            f"train acc {100 * h['train_acc'][-1]:.2f}%",
        ]
        if val[1] is not None:
            parts.append(f"val acc {100 * val[1]:.2f}%")
        if test[1] is not None:
            parts.append(f"test acc {100 * test[1]:.2f}%")
        parts += [f"{elapsed:.2f} s", f"{n / elapsed:,.0f} samples/s"]
        self.log("  ".join(parts))


def evaluate(model, X, y, batch_size=8192):
    """(mean loss, accuracy) of ``model`` on device arrays X (n, d0), y (n,), as Python floats.

    Runs in chunks on the device with the same fused loss kernel as training."""
    xp, n = model.xp, X.shape[0]
    bs = max(1, min(batch_size, n))
    ws = model._eval_ws
    if ws is None or ws.batch_size < bs:
        ws = model._eval_ws = model.workspace(bs)
    loss_sum = xp.zeros((), dtype=np.float64)
    correct = xp.zeros((), dtype=np.int64)
    for start in range(0, n, bs):
        xb, yb = X[start : start + bs], y[start : start + bs]
        k = xb.shape[0]
        logits = model.forward(xb, ws)
        correct += (logits.argmax(axis=1) == yb).sum()
        row_loss = ws.row_loss[:k]
        model.backend.kernels.softmax_xent(logits, yb, row_loss)
        loss_sum += row_loss.sum(dtype=np.float64)
    return float(loss_sum) / n, int(correct) / n
