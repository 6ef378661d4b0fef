"""The training loop: one code path for every device.

Everything the loop touches lives on the model's device and is allocated
before the first step: the training set, the batch and activation buffers
(:class:`~fastmlp.model.Workspace`), the flat gradient buffer, the optimiser
state and the per-step losses. A step is a fixed list of kernel calls
(:class:`~fastmlp.step.TrainStep`); each epoch writes its permutation, the
learning rate of every step and the step counter to the device once, runs the
steps (on a GPU, by replaying CUDA graphs of them), and reads the losses back
once, at the end, so a GPU never waits for the host inside an epoch.
"""

from __future__ import annotations

import time

import numpy as np

from . import checks
from .presets import DEFAULT as _DEFAULT
from .backend import namespace_of
from .errors import ConfigError, divergence_error, parameter_divergence_error
from .model import input_scale
from .optim import SGD, Adam, Optimizer, make_optimizer, make_schedule
from .sparse import DeviceCSR
from .step import TrainStep, check_graph_options


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
    if model.value_targets:
        if y.shape != (X.shape[0], model.sizes[-1]):
            raise ConfigError(f"{what} has {X.shape[0]} rows and {model.sizes[-1]} outputs but targets of shape "
                              f"{tuple(y.shape)}; give one row of {model.sizes[-1]} targets per row")
    elif y.shape != (X.shape[0],):
        raise ConfigError(f"{what} has {X.shape[0]} rows but labels of shape {tuple(y.shape)}; give one integer label per row")
    if X.shape[0] == 0:
        raise ConfigError(f"{what} is empty")
    if not (X.all_finite() if isinstance(X, DeviceCSR) else bool(xp.isfinite(X).all())):
        raise ConfigError(f"{what} features contain NaN or inf; clean or impute them first")
    if model.value_targets:
        if not bool(xp.isfinite(y).all()):
            raise ConfigError(f"{what} targets contain NaN or inf; clean or impute them first")
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= model.n_classes:
        raise ConfigError(
            f"{what} labels span {lo}..{hi} but the model has {model.n_classes} classes (0..{model.n_classes - 1}); "
            "make the last size the number of classes"
        )


def _check_permutation(perm, n, name):
    """``perm`` as a host int64 array if it holds every row index 0..n-1 exactly once,
    else a ConfigError naming it (the batch gather would clip or skip rows silently)."""
    p = perm.get() if hasattr(perm, "__cuda_array_interface__") else np.asarray(perm)
    if p.ndim != 1 or p.dtype.kind not in "iu":
        raise ConfigError(f"{name} must be a 1-D array of integer row indices, got dtype {p.dtype}, shape {p.shape}")
    if p.size != n:
        raise ConfigError(f"{name} has {p.size} indices for {n} training rows; give each row index once")
    if p.size and (p.min() < 0 or p.max() >= n):
        raise ConfigError(f"{name} holds indices outside 0..{n - 1} (from {p.min()} to {p.max()})")
    counts = np.bincount(p, minlength=n)
    if (counts != 1).any():
        row = int(np.argmax(counts != 1))
        raise ConfigError(f"{name} is not a permutation: row {row} appears {counts[row]} times")
    return p.astype(np.int64, copy=False)


class _TargetWatch:
    """Stops training once the accuracy on one split reaches ``accuracy``.

    Checked every ``every`` steps and after each epoch; the evaluation time is
    kept apart (``eval_seconds``) so the training clock leaves it out."""

    def __init__(self, model, accuracy, split, key, X, y, every):
        self.model, self.accuracy, self.X, self.y, self.every = model, accuracy, X, y, every
        self.split, self.key = split, key  # 'validation' | 'test', and its history column
        self.eval_seconds = 0.0
        self.reached = None  # (global step, accuracy) once reached

    def check(self, step_count):
        """Evaluate now (after ``step_count`` steps); True when the target is reached."""
        self.model.backend.synchronize()  # the queued training steps are not evaluation time
        t0 = time.perf_counter()
        acc = evaluate(self.model, self.X, self.y)[1]
        self.eval_seconds += time.perf_counter() - t0
        return self.seen(step_count, acc)

    def due(self, step_count):
        """For Trainer.train_epoch's ``stop``: evaluate every ``every`` steps."""
        return step_count % self.every == 0 and self.check(step_count)

    def seen(self, step_count, acc):
        """Note an accuracy measured after ``step_count`` steps; True once the target is reached."""
        if self.reached is None and acc >= self.accuracy:
            self.reached = (step_count, acc)
        return self.reached is not None


def _optimizer_name(opt):
    """The name make_optimizer knows an Optimizer instance by."""
    if isinstance(opt, Adam):
        return "adam"
    if isinstance(opt, SGD) and opt.momentum:
        return "nesterov" if opt.nesterov else "momentum"
    return "sgd"


def _epoch_seed(seed, epoch):
    """A 32-bit seed for one epoch's shuffle, derived from (seed, epoch)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class Trainer:
    """Mini-batch training of an :class:`~fastmlp.model.MLP` with a fused loss kernel.

    optimizer: 'sgd' | 'momentum' | 'nesterov' | 'adam', or an :class:`~fastmlp.optim.Optimizer`
    built over ``model.params`` (then ``momentum`` and ``weight_decay`` are its own); schedule: 'constant' | 'step' |
    'cosine' | 'onecycle' (see :func:`~fastmlp.optim.make_schedule`), with a linear
    warm-up over the first ``warmup`` epochs (a fraction is fine). ``dropout`` (a
    probability) drops hidden units in training, ``label_smoothing`` (eps) trains
    on targets (1 - eps) one-hot + eps / classes. ``target_accuracy`` stops
    training when the validation accuracy (the test accuracy if there is no
    validation set) reaches it, checked every ``eval_every`` steps (default: after
    each epoch) outside the training clock; ``history['target']`` says when.
    cuda_graph: 'auto' (on a GPU, replay the step as a CUDA graph when it can be
    captured, else run it eagerly and say why in ``graph_info``), 'on' (capture
    or raise), 'off' (eager). graph_scope: 'step' (a graph per step) or 'epoch'
    (the whole epoch as one graph). Both are ignored on the CPU.

    The defaults are the ``default`` preset's (:data:`fastmlp.presets.DEFAULT`), so
    a Trainer left at its defaults trains as ``fastmlp train`` with no flags does:
    momentum 0.9, lr 0.1 on a cosine schedule after one epoch of warm-up, weight
    decay 2e-4, dropout 0.1, batches of 128, seed 0.
    """

    def __init__(
        self,
        model,
        optimizer=_DEFAULT["optimizer"],
        lr=_DEFAULT["lr"],
        momentum=_DEFAULT["momentum"],
        weight_decay=_DEFAULT["weight_decay"],
        batch_size=_DEFAULT["batch_size"],
        schedule=_DEFAULT["schedule"],
        seed=_DEFAULT["seed"],
        progress=True,
        log=print,
        cuda_graph="auto",
        graph_scope="step",
        warmup=_DEFAULT["warmup"],
        dropout=_DEFAULT["dropout"],
        label_smoothing=_DEFAULT["label_smoothing"],
        target_accuracy=None,
        eval_every=None,
        track_weight_sq=False,
    ):
        batch_size = checks.integer("batch_size", batch_size, 1)
        lr = checks.positive("lr", lr)
        seed = checks.integer("seed", seed, 0)
        self.model = model
        self.backend = model.backend
        if isinstance(optimizer, Optimizer):
            if optimizer.params is not model.params:
                raise ConfigError("the optimizer given to Trainer must be built over this model's params")
            self.optimizer, self.optimizer_name = optimizer, _optimizer_name(optimizer)
        else:
            self.optimizer = make_optimizer(optimizer, model, momentum=momentum, weight_decay=weight_decay)
            self.optimizer_name = optimizer
        self.lr = lr
        self.schedule_name = schedule
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress
        self.log = log or (lambda *_: None)
        check_graph_options(cuda_graph, graph_scope)
        if cuda_graph == "on" and not model.backend.is_gpu:
            raise ConfigError(f"cuda_graph='on' needs a CUDA device, but the model is on {model.backend.name}; "
                              "use 'auto' or 'off'")
        self.cuda_graph, self.graph_scope = cuda_graph, graph_scope
        self.warmup = checks.non_negative("warmup", warmup)
        self.dropout = checks.fraction("dropout", dropout)
        self.label_smoothing = checks.fraction("label_smoothing", label_smoothing)
        if self.label_smoothing and model.loss_op != "softmax_xent":
            raise ConfigError(f"label_smoothing needs the softmax loss, not loss={model.loss!r}")
        self.target_accuracy = None if target_accuracy is None else checks.fraction("target_accuracy",
                                                                                     target_accuracy, True)
        self.eval_every = None if eval_every is None else checks.integer("eval_every", eval_every, 1)
        self.track_weight_sq = bool(track_weight_sq)  # also sum |W|^2 before each step (epoch_weight_sq)
        self.graph_info = {"mode": "eager", "scope": None, "reason": "no epoch run yet"}
        self._step = None
        self.history = {
            "epoch": [],
            "train_loss": [],
            "train_acc": [],
            "test_acc": [],
            "val_acc": [],
            "val_loss": [],
            "epoch_time": [],
            "samples_per_s": [],
            "lr_end": [],
            "iter_loss": [],
            "steps_per_epoch": 0,
        }
        self.epochs_done = 0
        self.step_count = 0

    def __repr__(self):
        opt = self.optimizer
        momentum = f", momentum={opt.momentum:g}" if getattr(opt, "momentum", 0) else ""
        graphs = "" if (self.cuda_graph, self.graph_scope) == ("auto", "step") else \
            f", cuda_graph={self.cuda_graph!r}, graph_scope={self.graph_scope!r}"
        recipe = "".join(f", {k}={v!r}" for k, v in self.recipe().items() if v not in (0.0, None))
        return (
            f"Trainer({self.model!r}, optimizer={self.optimizer_name!r}, lr={self.lr:g}{momentum}, "
            f"weight_decay={opt.weight_decay:g}, batch_size={self.batch_size}, schedule={self.schedule_name!r}, "
            f"seed={self.seed}{recipe}{graphs}, epochs_done={self.epochs_done})"
        )

    def recipe(self):
        """The recipe options beyond the optimiser's: warm-up, regularisers, target."""
        return {"warmup": self.warmup, "dropout": self.dropout, "label_smoothing": self.label_smoothing,
                "target_accuracy": self.target_accuracy, "eval_every": self.eval_every}

    def prepare(self, X, y, what="training data", y_name="y"):
        """X, y copied to the device (once) and checked: X in the model's dtype, or kept
        as uint8 (pixels, which the step scales by 1/255 as it gathers each batch);
        ``y_name`` names the labels' argument in errors."""
        bk, m = self.backend, self.model
        pixels = getattr(X, "dtype", None) == np.uint8
        if DeviceCSR.is_sparse(X):  # stays sparse: each step densifies only its rows
            X = DeviceCSR(bk, X, m.dtype)
        else:
            X = bk.asarray(X, dtype=None if pixels else m.dtype)
        y = y if hasattr(y, "dtype") else np.asarray(y)
        if m.value_targets:  # a float target matrix (n, outputs)
            y = bk.asarray(y, dtype=m.dtype)
            if y.ndim == 1:
                y = y.reshape(-1, 1)
        else:
            checks.whole_labels(y_name, y, namespace_of(y))
            y = bk.asarray(y, dtype=np.int64)
        _check_xy(m, X, y, what)
        return X, y

    def fit(self, X, y, epochs, X_test=None, y_test=None, X_val=None, y_val=None, permutations=None,
            total_epochs=None, on_epoch=None, validation_split=None):
        """Train for ``epochs`` more epochs; returns the history dict.

        X (n, d0) float, y (n,) int labels, host or device arrays (copied to the
        device once). ``permutations``, if given, is a list of host index arrays
        to use as the batch order of each epoch instead of the device RNG (for
        parity tests between devices). The schedule spans ``total_epochs``
        (default: the epochs done so far plus these), so a resumed run follows
        the same learning rates as an uninterrupted one. ``on_epoch(trainer)`` is
        called after every completed epoch (checkpoints); returning True stops training there.

        ``validation_split`` (a fraction in (0, 1)) holds out that share of X, y as
        the validation set instead of ``X_val, y_val``: the rows a seeded shuffle
        (the trainer's ``seed``) puts first, as ``fastmlp train --val-split`` does
        (:func:`fastmlp.config.split_validation`).

        ``history['lr_end']`` holds the learning rate of each epoch's last step;
        ``history['setup_time']`` the seconds from the call to the first step
        (copying the data to the device, checks, ``compile_time``).
        """
        t_setup = time.perf_counter()
        epochs = checks.integer("epochs", epochs, 1)
        if validation_split is not None:
            from .config import split_validation

            if X_val is not None or y_val is not None:
                raise ConfigError("give validation_split or X_val, y_val, not both")
            fraction = checks.fraction("validation_split", validation_split)
            if not fraction:
                raise ConfigError("validation_split must be > 0 (leave it out for no validation set)")
            X, y, X_val, y_val = split_validation(X, y, fraction, self.seed)
        if permutations is not None and len(permutations) != epochs:
            raise ConfigError(f"{len(permutations)} permutations given for {epochs} epochs; give one per epoch")
        with self.backend.activate():
            return self._fit(X, y, epochs, X_test, y_test, X_val, y_val, permutations, total_epochs, on_epoch, t_setup)

    def _fit(self, X, y, epochs, X_test, y_test, X_val, y_val, permutations, total_epochs, on_epoch, t_setup):
        X, y = self.prepare(X, y)
        evals = {}
        for name, (Xe, ye) in {"test": (X_test, y_test), "val": (X_val, y_val)}.items():
            if Xe is not None:
                evals[name] = self.prepare(Xe, ye, f"{name} data", f"y_{name}")
        n = X.shape[0]
        if permutations is not None:  # all checked before the first step
            permutations = [_check_permutation(p, n, f"permutations[{i}]") for i, p in enumerate(permutations)]
        steps = -(-n // min(self.batch_size, n))
        total = total_epochs or self.epochs_done + int(epochs)
        schedule = make_schedule(self.schedule_name, self.lr, steps * total, steps,
                                 warmup_steps=round(self.warmup * steps))
        watch = self._watch(evals)
        self.prepare_step(X, y)  # compile (timed as history['compile_time']) before the clock starts
        self.backend.synchronize()
        self.history["setup_time"] = time.perf_counter() - t_setup
        stop = watch.due if watch is not None and watch.every else None
        for i in range(int(epochs)):
            epoch = self.epochs_done + 1
            bar = self._bar(steps, epoch, evals)
            self.backend.synchronize()
            t0 = time.perf_counter()
            eval_before = watch.eval_seconds if watch else 0.0
            losses = self.train_epoch(X, y, schedule, None if permutations is None else permutations[i], bar, stop=stop)
            elapsed = time.perf_counter() - t0 - ((watch.eval_seconds - eval_before) if watch else 0.0)
            if bar is not None:
                bar.close()
            rows = self._step.rows[: len(losses)]
            self._record(epoch, losses, rows, elapsed, int(rows.sum()), schedule(self.step_count - 1), X, y, evals)
            reached = watch is not None and watch.seen(self.step_count, self.history[watch.key][-1])
            if reached:
                self._reached(watch)  # before on_epoch: a checkpoint then records it
            # on_epoch returning True (exactly) stops training after this epoch
            stopped = on_epoch is not None and on_epoch(self) is True
            if reached or stopped:
                break
        return self.history

    def _watch(self, evals):
        """The _TargetWatch for ``target_accuracy`` (None without one), logged once."""
        if self.target_accuracy is None:
            return None
        if not evals:
            raise ConfigError("target_accuracy needs data to measure it on: pass X_val, y_val or X_test, y_test")
        name, split, key = ("val", "validation", "val_acc") if "val" in evals else ("test", "test", "test_acc")
        watch = _TargetWatch(self.model, self.target_accuracy, split, key, *evals[name], self.eval_every)
        every = f"every {self.eval_every} steps and " if self.eval_every else ""
        self.log(f"stopping at {100 * self.target_accuracy:g}% {split} accuracy"
                 + (" (there is no validation split)" if name == "test" else "") + f", checked {every}after each epoch")
        self.history["target"] = {"accuracy": self.target_accuracy, "split": split, "eval_every": self.eval_every,
                                  "reached": False}
        return watch

    def _reached(self, watch):
        step, acc = watch.reached
        seconds = float(sum(self.history["epoch_time"]))
        self.history["target"].update(reached=True, step=step, epoch=self.epochs_done, accuracy_reached=acc,
                                      train_seconds=seconds)
        self.log(f"reached {100 * acc:.2f}% {watch.split} accuracy after {step} steps (epoch {self.epochs_done}, "
                 f"{seconds:.2f} s of training): stopping")

    def train_epoch(self, X, y, lr, permutation=None, bar=None, row_scale=None, step_rows=None, stop=None,
                    allow_nonfinite=False):
        """One pass over X, y (device arrays from :meth:`prepare`) in mini-batches.

        ``lr`` is a number or a function of the global step count, evaluated for
        every step of the epoch before it starts. The batch order is a permutation
        drawn on the device from (seed, epoch), so an epoch can be replayed without
        saving any RNG state; ``permutation`` (host indices) overrides it. Returns
        the mean loss of each step as a host float64 array, read back once, at the
        end; a non-finite loss is a DivergenceError, and so are parameters that are
        not all finite after the epoch's last update (one reduction on the device,
        read back with the losses; ``params_finite`` keeps the answer).

        Weighted rows (MLPClassifier's sample_weight): ``row_scale`` (n,), host or
        device, in batch order, multiplies the loss and gradient of the epoch's j-th
        row (the step then has a ``scale_rows`` kernel, and is rebuilt when
        row_scale starts or stops being given), and ``step_rows`` (steps,) host
        numbers replace each step's row count as the ``rows`` of the optimiser's
        decay_per_row / rows. Both are written to the device once, with the epoch's
        rates. ``stop(steps done in all)``, if given, is asked after every step but the
        last; True ends the epoch there (then only the steps run are returned and
        counted). ``allow_nonfinite``: return non-finite losses instead of raising
        (scikit-learn's estimators train on and check ``params_finite`` themselves).
        """
        bk = self.backend
        with bk.activate():
            step = self.prepare_step(X, y, scale_rows=row_scale is not None)
            if row_scale is not None and np.shape(row_scale) != (step.n,):
                raise ConfigError(f"row_scale has shape {np.shape(row_scale)}; give one factor per row, ({step.n},)")
            if step_rows is not None and len(step_rows) != step.steps:
                raise ConfigError(f"{len(step_rows)} step_rows for {step.steps} steps; give one per step")
            lr_at = lr if callable(lr) else (lambda _step, value=float(lr): value)
            lrs = [lr_at(self.step_count + i) for i in range(step.steps)]
            epoch = self.epochs_done + 1
            if permutation is not None:
                perm = bk.asarray(permutation, dtype=np.int64)
            else:
                perm = bk.shuffle(_epoch_seed(self.seed, epoch), step.n)  # no generator built: counter-based on a GPU
            rows = step.rows if step_rows is None else step_rows
            wds = [self.optimizer.decay(float(r)) for r in rows]
            step.start_epoch(perm, lrs, wds, self.optimizer.t, row_scale)
            on_step = None if bar is None else _BarStep(bar, step, bk)
            ran = step.steps
            if stop is None:
                step.run_epoch(on_step)
            else:
                for s in range(step.steps):
                    step.run(s)
                    if on_step is not None:
                        on_step()
                    if s + 1 < step.steps and stop(self.step_count + s + 1):
                        ran = s + 1
                        break
            finite = self.model.finite_flag()  # queued after the last update, read with the losses
            losses = bk.to_host(step.step_loss)[:ran].astype(np.float64) / step.rows[:ran]  # the one sync of the epoch
            self.params_finite = bool(finite)
            if step.weight_sq is not None:
                self.epoch_weight_sq = bk.to_host(step.weight_sq).astype(np.float64)
        self.optimizer.t += ran
        self.step_count += ran
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size and not allow_nonfinite:
            raise divergence_error(self, epoch, losses, bad[0], lrs[bad[0]])
        if not self.params_finite and not allow_nonfinite:  # the last update diverged: no loss saw it
            raise parameter_divergence_error(self, epoch, losses, lrs[ran - 1])
        self.epochs_done = epoch
        return losses

    def prepare_step(self, X, y, scale_rows=False):
        """The :class:`~fastmlp.step.TrainStep` for X, y (device arrays from :meth:`prepare`):
        built, warmed up (compiling the kernels, timed as ``history['compile_time']``)
        and, on a GPU, captured as CUDA graphs on first use; reused while X, y, the
        batch size, the optimiser's settings and ``scale_rows`` (whether rows are
        weighted) stay the same, and so do dropout, label smoothing and the seed."""
        with self.backend.activate():
            step = self._step
            recipe = (self.dropout, self.label_smoothing, int(self.seed))
            current = (step is not None and step.batch == min(self.batch_size, X.shape[0])
                       and step.still_valid(X, y, self.optimizer)
                       and (step.weight_sq is not None or not self.track_weight_sq)
                       and (step.row_scale is not None) == bool(scale_rows)
                       and step.recipe == recipe)
            if not current:
                self._step = None  # free the old buffers first
                step = TrainStep(self.model, self.optimizer, X, y, self.batch_size, self.track_weight_sq,
                                 bool(scale_rows), *recipe)
                t0 = time.perf_counter()
                step.warm_up()
                step.capture(self.cuda_graph, self.graph_scope)
                self.backend.synchronize()
                seconds = time.perf_counter() - t0
                self.history["compile_time"] = seconds
                self.history["steps_per_epoch"] = step.steps
                self.graph_info = step.graph_info
                if seconds > 0.5:
                    self.log(f"compiled kernels in {seconds:.1f} s (cached for later runs)")
                if self.backend.is_gpu and self.cuda_graph == "auto" and step.graph_info["mode"] != "graph":
                    self.log(f"CUDA graphs not used: {step.graph_info['reason']}")
                self._step = step
            return step

    def _bar(self, steps, epoch, evals=()):
        """The epoch's tqdm bar: steps done, and (see :class:`_BarStep`) the running
        loss of the epoch and the accuracy measured after the one before."""
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        # disable=None: tqdm turns itself off when stderr is not a terminal.
        bar = tqdm(total=steps, desc=f"epoch {epoch}", unit="batch", leave=False, disable=None)
        key = "val_acc" if "val" in evals else "train_acc"
        if self.history[key]:
            bar.last_accuracy = (key.replace("_acc", " acc"), self.history[key][-1])
        return bar

    def _record(self, epoch, losses, rows, elapsed, n, lr, X, y, evals):
        h = self.history
        train_loss = float((losses * rows).sum() / rows.sum())
        h["epoch"].append(epoch)
        h["train_loss"].append(train_loss)
        h["iter_loss"].extend(losses.tolist())
        h["epoch_time"].append(elapsed)
        h["samples_per_s"].append(n / elapsed)
        h["lr_end"].append(lr)
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


class _BarStep:
    """``on_step`` for a progress bar: one step more, and about twice a second the
    running mean loss of the epoch so far (read back from the device then, and only
    then) with the accuracy of the epoch before (``bar.last_accuracy``)."""

    EVERY_S = 0.5

    def __init__(self, bar, step, backend):
        self.bar, self.step, self.backend = bar, step, backend
        self.done = 0
        self.shown_at = time.monotonic()

    def __call__(self):
        self.done += 1
        self.bar.update(1)
        now = time.monotonic()
        if now - self.shown_at < self.EVERY_S or getattr(self.bar, "disable", False):
            return
        self.shown_at = now
        k = self.done
        losses = self.backend.to_host(self.step.step_loss[:k]).astype(np.float64)
        postfix = {"loss": f"{losses.sum() / self.step.rows[:k].sum():.4f}"}
        if getattr(self.bar, "last_accuracy", None):
            name, acc = self.bar.last_accuracy
            postfix[f"{name} (last epoch)"] = f"{100 * acc:.2f}%"
        self.bar.set_postfix(postfix, refresh=False)


def evaluate(model, X, y, batch_size=8192):
    """(mean loss, accuracy) of ``model`` on device arrays X (n, d0), y (n,), as Python floats.

    Runs in chunks on the device with the same fused loss kernel as training."""
    with model.backend.activate():
        return _evaluate(model, X, y, batch_size)


def _evaluate(model, X, y, batch_size):
    xp, n = model.xp, X.shape[0]
    bs = max(1, min(batch_size, n))
    ws = model._eval_ws
    if ws is None or ws.batch_size < bs:
        ws = model._eval_ws = model.workspace(bs)
    loss_sum = xp.zeros((), dtype=np.float64)
    correct = xp.zeros((), dtype=np.int64)
    scale = model.dtype.type(input_scale(X.dtype))
    for start in range(0, n, bs):
        xb, yb = X[start : start + bs], y[start : start + bs]
        k = xb.shape[0]
        if scale != 1:  # uint8 pixels: converted as the gather kernel does, into the workspace
            xb = xp.multiply(xb, scale, out=ws.x[:k], dtype=model.dtype)
        logits = model.forward(xb, ws)
        pred = logits[:, 0] > 0 if model.loss == "logistic" else logits.argmax(axis=1)
        correct += (pred == yb).sum()
        row_loss = ws.row_loss[:k]
        model.loss_kernel(logits, yb, row_loss)
        loss_sum += row_loss.sum(dtype=np.float64)
    return float(loss_sum) / n, int(correct) / n
