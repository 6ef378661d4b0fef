"""The stochastic solvers, ``"sgd"`` and ``"adam"``: scikit-learn's epoch loop around
:meth:`fastmlp.Trainer.train_epoch`.

Each epoch runs on the device as fastmlp's training step; around it, this
module does what scikit-learn's ``_fit_stochastic`` does: the batch order
(the same ``random_state`` stream, so with the same seed both shuffle the same
way), the L2 penalty (``alpha`` over the rows, or the summed sample weights,
of each batch), sample weights as per-row loss weights, the learning-rate
schedules, ``tol`` / ``n_iter_no_change`` stopping, and early stopping on a
validation split with the best weights restored.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle as sk_shuffle

from ..optim import SGD, Adam
from ..trainer import Trainer
from .base import dense_rows, host, nonfinite_error, row_chunks


class StochasticSolver:
    """What scikit-learn keeps in ``_optimizer``: the current ``learning_rate`` (which
    ``iteration_ends`` and ``trigger_stopping`` change as its SGDOptimizer /
    AdamOptimizer do), and fastmlp's optimiser over the model's parameters, with
    the :class:`~fastmlp.Trainer` that runs epochs with it."""

    def __init__(self, est):
        self.solver = est.solver
        self.learning_rate_init = float(est.learning_rate_init)
        self.learning_rate = self.learning_rate_init
        self.lr_schedule = est.learning_rate if est.solver == "sgd" else "constant"
        self.power_t = float(est.power_t)
        if est.solver == "adam":  # epsilon where scikit-learn adds it
            self.config = (Adam, {"beta1": float(est.beta_1), "beta2": float(est.beta_2), "eps": float(est.epsilon),
                                  "eps_form": "sklearn"})
        else:
            self.config = (SGD, {"momentum": float(est.momentum),
                                 "nesterov": bool(est.nesterovs_momentum) and est.momentum > 0})
        self.optimizer = self.trainer = None
        self._saved = None  # the optimiser's state on the host, while unbound

    def bind(self, model, alpha):
        """The fastmlp optimiser over ``model.params`` (built, with any saved state, on first use)."""
        opt = self.optimizer
        if opt is None or opt.params is not model.params or opt.decay_per_row != float(alpha):
            kind, kwargs = self.config
            opt = kind(model.backend, model.params, model.n_weights, decay_per_row=float(alpha), **kwargs)
            if self._saved is not None:
                opt.load_state(self._saved)
            self.optimizer, self.trainer, self._saved = opt, None, None
        return opt

    def unbound(self):
        """A copy holding no device objects: the optimiser's state as host arrays (for
        pickling, or after the model was rebuilt)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        if self.optimizer is not None:
            other._saved = {k: (np.array(host(v), copy=True) if hasattr(v, "shape") else v)
                            for k, v in self.optimizer.state().items()}
        other.optimizer = other.trainer = None
        return other

    def trainer_for(self, model, batch, alpha, cuda_graph):
        """The Trainer running epochs of ``batch`` rows with this optimiser (kept while
        they stay the same)."""
        opt = self.bind(model, alpha)
        trainer = self.trainer
        if trainer is None or trainer.batch_size != batch or trainer.optimizer is not opt:
            # scikit-learn's MLP: no warm-up, dropout or label smoothing (the Trainer's
            # defaults are the command line's); the L2 term is the optimiser's decay_per_row
            trainer = Trainer(model, optimizer=opt, lr=self.learning_rate_init, batch_size=batch,
                              schedule="constant", seed=0, progress=False, log=None, cuda_graph=cuda_graph,
                              warmup=0, dropout=0.0, label_smoothing=0.0, track_weight_sq=bool(alpha))
            self.trainer = trainer
        return trainer

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """True to stop; the adaptive schedule first divides the rate by 5 until it is 1e-6."""
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False

    def __getstate__(self):
        return self.unbound().__dict__


def _batch_size(est, n):
    if est.batch_size == "auto":
        return min(200, n)
    if est.batch_size > n:
        warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
    return int(min(est.batch_size, n))


def fit_stochastic(est, model, X, targets, y_score, sw, incremental, on_device):
    """Train ``model`` (est's network) on X and ``targets`` (labels (n,) or a float
    matrix (n, k)) for up to ``max_iter`` epochs, or one with ``incremental``
    (partial_fit); ``y_score`` is y as the validation score reads it."""
    if not incremental or getattr(est, "_optimizer", None) is None:
        est._optimizer = StochasticSolver(est)  # a fresh one for fit, the same across partial_fit (as scikit-learn)
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    rs = est._random_state
    early_stopping = est.early_stopping
    val = None
    if early_stopping:
        if est.validation_scores_ is None:  # a warm start that turns early stopping on
            est.validation_scores_, est.best_validation_score_ = [], -np.inf
        if getattr(est, "validation_loss_curve_", None) is None:
            est.validation_loss_curve_ = []
        est.best_loss_ = None
        idx_train, idx_val = train_test_split(np.arange(X.shape[0]), random_state=rs,
                                              test_size=est.validation_fraction, stratify=est._stratify(targets))
        if len(idx_val) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your "
                             "dataset.")
        take = model.backend.asarray if on_device else np.asarray  # index a CuPy X with device indices
        val = (X[take(idx_val)], y_score[idx_val], None if sw is None else sw[idx_val], targets[idx_val])
        X, targets = X[take(idx_train)], targets[idx_train]
        sw = None if sw is None else sw[idx_train]
        if getattr(est, "_best_params", None) is None:
            est._best_params = np.array(host(model.params), copy=True)
    elif est.best_loss_ is None:  # a warm start that turns early stopping off
        est.best_loss_ = np.inf
    _epochs(est, model, X, targets, sw, val, incremental)


def _epochs(est, model, X, targets, sw, val, incremental):
    solver = est._optimizer
    alpha = float(est.alpha)
    n = X.shape[0]
    batch = _batch_size(est, n)
    trainer = solver.trainer_for(model, batch, alpha, est.cuda_graph)
    Xd, Td = trainer.prepare(X, targets)
    steps = -(-n // batch)
    rows = np.full(steps, batch, dtype=np.float64)
    rows[-1] = n - batch * (steps - 1)
    starts = np.arange(steps) * batch
    sample_idx = np.arange(n)
    rs = est._random_state
    first_loss = None  # the loss before this call's first update: what a divergence is blamed on
    try:
        est.n_iter_ = 0
        for _ in range(est.max_iter):
            if est.shuffle:
                sample_idx = sk_shuffle(sample_idx, random_state=rs)
            row_scale = step_weight = None
            l2_scale = np.ones(steps)
            if sw is not None:
                # The weighted batch loss is sum(w l) / sum(w) over its rows: each row's
                # loss and gradient (the kernel's l / rows) times w * rows / sum(w).
                w_perm = sw[sample_idx]
                step_weight = np.add.reduceat(w_perm, starts)
                if not np.all(step_weight != 0):
                    raise ValueError("the sample weights of a batch sum to zero, so its weighted loss is undefined; "
                                     "give those rows weight or use a larger batch")
                l2_scale = rows / step_weight
                row_scale = w_perm * np.repeat(l2_scale, rows.astype(np.int64))
            losses = trainer.train_epoch(Xd, Td, lr=solver.learning_rate, permutation=sample_idx,
                                         row_scale=row_scale, step_rows=step_weight, allow_nonfinite=True)
            # scikit-learn's epoch loss adds each batch's L2 term, 0.5 alpha |W|^2 / sum(w),
            # times the batch's rows, with W as it is before that batch's step: the
            # trainer sums |W|^2 on the device before every update (track_weight_sq).
            sq = float((trainer.epoch_weight_sq * l2_scale).sum()) if alpha else 0.0
            est.n_iter_ += 1
            est.loss_ = float((losses * rows).sum() + 0.5 * alpha * sq) / n
            est.t_ += n
            est.loss_curve_.append(est.loss_)
            if est.verbose:
                print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
            if first_loss is None:
                first_loss = float(losses[0])
            if val is None and not trainer.params_finite:
                # scikit-learn trains on to max_iter and then raises; NaN or inf weights stay
                # so, so stop now (early stopping instead restores its best weights, checked after)
                raise _diverged(est, model, first_loss, f"in epoch {est.n_iter_}")
            _update_no_improvement_count(est, model, val)
            solver.iteration_ends(est.t_)
            if est._no_improvement_count > est.n_iter_no_change:
                what = "Validation score" if val is not None else "Training loss"
                msg = f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} consecutive epochs."
                if solver.trigger_stopping(msg, est.verbose):
                    break
                est._no_improvement_count = 0
            if incremental:
                break
            if est.n_iter_ == est.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't "
                              "converged yet." % est.max_iter, ConvergenceWarning)
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.")
    if val is not None:  # restore the best weights
        model.set_flat_params(est._best_params)
        if not bool(model.finite_flag()):
            raise _diverged(est, model, first_loss, "in training (early stopping kept them as the best)")


def _diverged(est, model, first_loss, when):
    """The ValueError for weights that became NaN or inf ``when``."""
    lr = float(est.learning_rate_init)
    schedule = f" with learning_rate={est.learning_rate!r}" if est.solver == "sgd" and est.learning_rate != "constant" \
        else ""
    scale = ", or scale X and y" if model.value_targets else ""
    return nonfinite_error(model, first_loss, (
        f"the updates blew up: the weights became NaN or inf {when}; learning_rate_init={lr:g} is "
        f"too large for solver={est.solver!r}{schedule}: try learning_rate_init={min(lr / 10, 1e-3):g}{scale}."))


def _update_no_improvement_count(est, model, val):
    if val is not None:
        X_val, y_val, w_val, T_val = val
        score = est._score(X_val, y_val, w_val)
        est.validation_scores_.append(float(score))
        est.validation_loss_curve_.append(mean_loss(model, X_val, T_val))
        if est.verbose:
            print("Validation score: %f" % est.validation_scores_[-1])
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = float(score)
            est._best_params = np.array(host(model.params), copy=True)
    else:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if est.loss_curve_[-1] < est.best_loss_:
            est.best_loss_ = est.loss_curve_[-1]


def mean_loss(model, X, targets):
    """The mean (unweighted, unregularised) loss of ``model`` on X and ``targets``, by the
    training loss kernel in chunks of rows: the validation loss curve's points."""
    bk = model.backend
    with bk.activate():
        T = bk.asarray(targets, dtype=model.dtype if model.value_targets else np.int64)
        if model.value_targets:
            T = T.reshape(T.shape[0], -1)
        chunks = row_chunks(X.shape[0])
        ws = model.workspace(chunks[0][1])
        total = model.xp.zeros((), dtype=np.float64)
        for a, b in chunks:
            x = bk.asarray(dense_rows(X, a, b), dtype=model.dtype)
            row_loss = ws.row_loss[: b - a]
            model.loss_kernel(model.forward(x, ws), T[a:b], row_loss)
            total += row_loss.sum(dtype=np.float64)
        return float(total) / X.shape[0]
