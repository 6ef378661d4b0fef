"""Optimisers and learning-rate schedules.

An optimiser owns its state buffers (allocated once, like the parameters: one
flat array) and updates the flat parameter buffer in place from the flat
gradient buffer with whole-buffer operations, so the cost per step does not
grow with the number of layers. L2 weight decay adds ``wd * W`` to the gradient
of the weights only (``params[:n_decay]``), not the biases.
"""

from __future__ import annotations

import math

from .errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine")


class Optimizer:
    """Base: holds the flat params, a scratch buffer and weight decay."""

    def __init__(self, xp, params, n_decay, weight_decay=0.0):
        if weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
        self.xp = xp
        self.params = params
        self.n_decay = n_decay
        self.weight_decay = float(weight_decay)
        self.scratch = xp.empty_like(params)
        self.t = 0

    def _decay(self, grad):
        if self.weight_decay:
            w, s = self.params[: self.n_decay], self.scratch[: self.n_decay]
            self.xp.multiply(w, self.weight_decay, out=s)
            grad[: self.n_decay] += s

    def step(self, grad, lr):
        """params <- update(params, grad) in place; ``grad`` may be modified."""
        self.t += 1
        self._decay(grad)
        self._update(grad, lr)

    def state(self):
        """Arrays and counters to checkpoint (name -> array or number)."""
        return {"t": self.t}

    def load_state(self, state):
        self.t = int(state["t"])


class SGD(Optimizer):
    """Plain SGD, heavy-ball momentum or Nesterov momentum.

    momentum:  v <- mu v - lr g;  p <- p + v
    nesterov:  v <- mu v - lr g;  p <- p + mu v - lr g   (the look-ahead form)
    """

    def __init__(self, xp, params, n_decay, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(xp, params, n_decay, weight_decay)
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov needs a momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocity = xp.zeros_like(params) if momentum else None

    def _update(self, grad, lr):
        xp, s = self.xp, self.scratch
        xp.multiply(grad, lr, out=s)
        if self.velocity is None:
            self.params -= s
            return
        v = self.velocity
        v *= self.momentum
        v -= s
        if self.nesterov:
            self.params -= s
            xp.multiply(v, self.momentum, out=s)
        else:
            s = v
        self.params += s

    def state(self):
        out = super().state()
        if self.velocity is not None:
            out["velocity"] = self.velocity
        return out

    def load_state(self, state):
        super().load_state(state)
        if self.velocity is not None:
            self.velocity[...] = self.xp.asarray(state["velocity"])


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected:

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, xp, params, n_decay, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(xp, params, n_decay, weight_decay)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(f"Adam betas must be in [0, 1), got {beta1}, {beta2}")
        if not eps > 0:
            raise ConfigError(f"Adam eps must be > 0, got {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = xp.zeros_like(params)
        self.v = xp.zeros_like(params)
        self.scratch2 = xp.empty_like(params)

    def _update(self, grad, lr):
        xp, m, v, s, s2 = self.xp, self.m, self.v, self.scratch, self.scratch2
        b1, b2 = self.beta1, self.beta2
        m *= b1
        xp.multiply(grad, 1 - b1, out=s)
        m += s
        v *= b2
        xp.multiply(grad, grad, out=s)
        s *= 1 - b2
        v += s
        xp.sqrt(v, out=s)
        s *= 1.0 / math.sqrt(1 - b2**self.t)
        s += self.eps
        xp.divide(m, s, out=s2)
        s2 *= lr / (1 - b1**self.t)
        self.params -= s2

    def state(self):
        return {**super().state(), "m": self.m, "v": self.v}

    def load_state(self, state):
        super().load_state(state)
        self.m[...] = self.xp.asarray(state["m"])
        self.v[...] = self.xp.asarray(state["v"])


def make_optimizer(name, model, momentum=0.9, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8):
    """The optimiser called ``name`` over ``model.params`` (weights decayed, biases not)."""
    key = str(name).lower()
    args = (model.xp, model.params, model.n_weights)
    if key == "sgd":
        return SGD(*args, momentum=0.0, weight_decay=weight_decay)
    if key == "momentum":
        return SGD(*args, momentum=momentum, weight_decay=weight_decay)
    if key == "nesterov":
        return SGD(*args, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if key == "adam":
        return Adam(*args, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def make_schedule(name, lr, total_steps, steps_per_epoch, step_epochs=None, gamma=0.1):
    """lr(step) for step = 0, 1, ...: 'constant'; 'step' (multiply by gamma every
    ``step_epochs`` epochs, default a third of the run); 'cosine' (from lr down to 0
    over ``total_steps``, evaluated per step)."""
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a positive number, got {lr!r}")
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
