"""Optimisers and learning-rate schedules.

An optimiser owns its state buffers (allocated once, like the parameters: one
flat array) and updates the flat parameter buffer in place from the flat
gradient buffer with one fused kernel of the device, so the cost per step does
not grow with the number of layers. L2 weight decay adds ``wd * W`` to the
gradient of the weights only (``params[:n_decay]``), not the biases.
"""

from __future__ import annotations

import math

import numpy as np

from . import checks
from .errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine", "onecycle")


class Optimizer:
    """Base: the flat params, the step count, and the one-kernel update.

    The update kernels read the learning rate and the weight decay from a device
    array ``rates`` (steps, 2) at the step counter ``state[0]``, and the step
    number from ``state[1]`` (see ``kernels/sgd_update.py``), so the trainer's
    step can be replayed as a CUDA graph. :meth:`step` is the one-off form with
    a number for the rate.

    ``decay_per_row``, when set, replaces ``weight_decay`` by ``decay_per_row /
    rows in the batch`` for each step (scikit-learn's ``alpha / batch rows``, also
    for the short last batch).
    """

    def __init__(self, backend, params, n_decay, weight_decay=0.0, decay_per_row=None):
        weight_decay = checks.non_negative("weight_decay", weight_decay)
        self.backend = backend
        self.xp = backend.xp
        self.params = params
        self.n_decay = int(n_decay)
        self.weight_decay = float(weight_decay)
        self.decay_per_row = None if decay_per_row is None else checks.non_negative("decay_per_row", decay_per_row)
        self.t = 0
        self._rates1 = self.xp.zeros((1, 2), dtype=params.dtype)  # for step(): rates and state of one step
        self._state1 = self.xp.zeros(2, dtype=np.int64)

    def step(self, grad, lr, rows=None):
        """params <- update(params, grad + wd * W) in place with learning rate ``lr``; wd is
        weight_decay, or decay_per_row / rows when decay_per_row is set."""
        self._rates1[...] = self.xp.asarray(np.array([[lr, self.decay(rows)]]))
        self._state1[...] = self.xp.asarray(np.array([0, self.t]))
        self.update(self.backend.kernels, grad, self._rates1, self._state1)
        self.t += 1

    def decay(self, rows=None):
        """The L2 coefficient for a step over ``rows`` rows (or summed sample weights)."""
        if self.decay_per_row is None:
            return self.weight_decay
        if rows is None or not rows > 0:
            raise ValueError(f"this optimiser's decay_per_row needs the rows of each step (rows=..., > 0), got {rows!r}")
        return float(self.decay_per_row) / rows

    def update(self, k, grad, rates, state):
        """Launch the update kernel of KernelSet ``k`` (does not move ``t``)."""
        raise NotImplementedError

    def buffers(self):
        """The state arrays the update changes besides the parameters."""
        return []

    def settings(self):
        """The numbers a launch bakes in: a captured graph is only valid while they hold
        (the rates are data, read from the device at every step)."""
        return (type(self).__name__,)

    def state(self):
        """Arrays and counters to checkpoint (name -> array or number)."""
        return {"t": self.t}

    def load_state(self, state):
        self.t = int(state["t"])

    def _load_into(self, dst, src):
        src = self.xp.asarray(src, dtype=dst.dtype)
        if src.shape != dst.shape:
            raise ValueError(f"optimiser state of shape {src.shape}, expected {dst.shape}")
        dst[...] = src


class SGD(Optimizer):
    """Plain SGD, heavy-ball momentum or Nesterov momentum (kernels/sgd_update.py).

    momentum:  v <- mu v - lr g;  p <- p + v
    nesterov:  v <- mu v - lr g;  p <- p + mu v - lr g   (the look-ahead form)

    This is scikit-learn's (Sutskever's) form, with lr inside the velocity. PyTorch's
    SGD keeps v <- mu v + g and steps p <- p - lr v, which is the same only while
    lr is constant.
    """

    def __init__(self, backend, params, n_decay, momentum=0.0, nesterov=False, weight_decay=0.0, decay_per_row=None):
        super().__init__(backend, params, n_decay, weight_decay, decay_per_row)
        if not 0 <= momentum <= 1:
            raise ConfigError(f"momentum must be in [0, 1], got {momentum}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov needs a momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        # plain SGD keeps no velocity: the kernel takes an empty array for "none"
        self.velocity = self.xp.zeros(params.size if momentum else 0, dtype=params.dtype)

    def update(self, k, grad, rates, state):
        k.sgd_update(self.params, grad, self.velocity, rates, state, self.momentum, self.nesterov, self.n_decay)

    def buffers(self):
        return [self.velocity] if self.velocity.size else []

    def settings(self):
        return super().settings() + (self.momentum, self.nesterov)

    def state(self):
        out = super().state()
        if self.velocity.size:
            out["velocity"] = self.velocity
        return out

    def load_state(self, state):
        super().load_state(state)
        if self.velocity.size:
            self._load_into(self.velocity, state["velocity"])


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected (kernels/adam_update.py):

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    eps_form="torch":    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)   (PyTorch, the paper)
    eps_form="sklearn":  p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)  (scikit-learn)

    The two differ only in where eps is added: to the bias-corrected sqrt(v), or to
    sqrt(v) before the correction (the kernel's ``sklearn_eps`` flag).
    """

    EPS_FORMS = ("torch", "sklearn")

    def __init__(self, backend, params, n_decay, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 eps_form="torch", decay_per_row=None):
        super().__init__(backend, params, n_decay, weight_decay, decay_per_row)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(f"Adam betas must be in [0, 1), got {beta1}, {beta2}")
        eps = checks.positive("eps", eps)
        if eps_form not in self.EPS_FORMS:
            raise ConfigError(f"Adam eps_form must be one of {', '.join(self.EPS_FORMS)}; got {eps_form!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.eps_form = eps_form
        self.sklearn_eps = eps_form == "sklearn"  # the update kernels' flag
        self.m = self.xp.zeros_like(params)
        self.v = self.xp.zeros_like(params)

    def update(self, k, grad, rates, state):
        k.adam_update(self.params, grad, self.m, self.v, rates, state, self.beta1, self.beta2, self.eps, self.n_decay,
                      self.sklearn_eps)

    def buffers(self):
        return [self.m, self.v]

    def settings(self):
        return super().settings() + (self.beta1, self.beta2, self.eps, self.sklearn_eps)

    def state(self):
        return {**super().state(), "m": self.m, "v": self.v}

    def load_state(self, state):
        super().load_state(state)
        self._load_into(self.m, state["m"])
        self._load_into(self.v, state["v"])


def make_optimizer(name, model, momentum=0.9, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8):
    """The optimiser called ``name`` over ``model.params`` (weights decayed, biases not)."""
    key = str(name).lower()
    args = (model.backend, model.params, model.n_weights)
    if key == "sgd":
        return SGD(*args, momentum=0.0, weight_decay=weight_decay)
    if key == "momentum":
        return SGD(*args, momentum=momentum, weight_decay=weight_decay)
    if key == "nesterov":
        return SGD(*args, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if key == "adam":
        return Adam(*args, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def make_schedule(name, lr, total_steps, steps_per_epoch, step_epochs=None, gamma=0.1, warmup_steps=0):
    """lr(step) for step = 0, 1, ..., total_steps - 1.

    'constant'; 'step' (multiply by gamma every ``step_epochs`` epochs, default a
    third of the run); 'cosine' (from lr down to 0 at ``total_steps``, per step);
    'onecycle' (PyTorch's OneCycleLR with its defaults: from lr / 25 up to lr over
    the warm-up, 30 % of the run unless ``warmup_steps`` says otherwise, then down
    to lr / 25e4 at the last step, both halves cosine-shaped).

    ``warmup_steps`` > 0 puts a linear warm-up in front of constant / step /
    cosine: lr (s + 1) / warmup_steps for the first steps, then the schedule over
    the remaining ones, so a cosine still reaches 0 at the end of the run. A
    warm-up as long as the run (a one-epoch run of a preset with a one-epoch
    warm-up) reaches lr at its last step."""
    lr = checks.positive("lr", lr)
    warm = checks.integer("warmup_steps", warmup_steps, 0)
    if warm > total_steps:
        raise ConfigError(f"the warm-up cannot be longer than the run ({total_steps} steps), got {warmup_steps} steps")
    key = str(name).lower()
    if key == "onecycle":
        return _one_cycle(lr, total_steps, warm or 0.3 * total_steps)
    after = _schedule(name, lr, total_steps - warm, steps_per_epoch, step_epochs, gamma)
    if not warm:
        return after
    return lambda step: lr * (step + 1) / warm if step < warm else after(step - warm)


def _schedule(name, lr, total_steps, steps_per_epoch, step_epochs, gamma):
    key = str(name).lower()
    if key == "constant":
        return lambda step: lr
    if key == "step":
        every = step_epochs or max(1, round(total_steps / steps_per_epoch / 3))
        if every < 1:
            raise ConfigError(f"step schedule needs step_epochs >= 1, got {every}")
        return lambda step: lr * gamma ** (step // (every * steps_per_epoch))
    if key == "cosine":
        return lambda step: 0.5 * lr * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ConfigError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULES)}")


def _one_cycle(lr, total_steps, warmup, div=25.0, final_div=1e4):
    """torch.optim.lr_scheduler.OneCycleLR(max_lr=lr, total_steps, pct_start=warmup /
    total_steps), anneal_strategy 'cos', three_phase False: the same numbers."""
    start, end = lr / div, lr / div / final_div
    peak_at, last = float(warmup) - 1, total_steps - 1

    def cos(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)

    def at(step):
        if step <= peak_at:
            return cos(start, lr, step / peak_at if peak_at > 0 else 1.0)
        return cos(lr, end, min(1.0, (step - peak_at) / (last - peak_at)))

    return at
