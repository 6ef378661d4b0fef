"""Optimisers and learning-rate schedules.

An optimiser owns its state buffers (allocated once, like the parameters: one
flat array) and updates the flat parameter buffer in place from the flat
gradient buffer with one fused kernel of the device, so the cost per step does
not grow with the number of layers. L2 weight decay adds ``wd * W`` to the
gradient of the weights only (``params[:n_decay]``), not the biases.
"""

from __future__ import annotations

import math

from .errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine")


class Optimizer:
    """Base: the flat params, the device's kernels and the step count."""

    def __init__(self, backend, params, n_decay, weight_decay=0.0):
        if not weight_decay >= 0:
            raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")
        self.backend = backend
        self.xp = backend.xp
        self.params = params
        self.n_decay = int(n_decay)
        self.weight_decay = float(weight_decay)
        self.t = 0

    def step(self, grad, lr):
        """params <- update(params, grad + weight_decay * W) in place, one fused kernel."""
        self.t += 1
        self._update(grad, lr)

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
    """

    def __init__(self, backend, params, n_decay, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(backend, params, n_decay, weight_decay)
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov needs a momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        # plain SGD keeps no velocity: the kernel takes an empty array for "none"
        self.velocity = self.xp.zeros(params.size if momentum else 0, dtype=params.dtype)

    def warm_up(self):
        """Compile the update kernel on throwaway one-element arrays (changes no state)."""
        e = self.xp.zeros(1, dtype=self.params.dtype)
        v = self.xp.zeros(1 if self.velocity.size else 0, dtype=self.params.dtype)
        self.backend.kernels.sgd_update(e, e.copy(), v, 0.0, self.momentum, self.nesterov, 0.0, 0)

    def _update(self, grad, lr):
        self.backend.kernels.sgd_update(
            self.params, grad, self.velocity, lr, self.momentum, self.nesterov, self.weight_decay, self.n_decay
        )

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
    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, backend, params, n_decay, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(backend, params, n_decay, weight_decay)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(f"Adam betas must be in [0, 1), got {beta1}, {beta2}")
        if not eps > 0:
            raise ConfigError(f"Adam eps must be > 0, got {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = self.xp.zeros_like(params)
        self.v = self.xp.zeros_like(params)

    def warm_up(self):
        """Compile the update kernel on throwaway one-element arrays (changes no state)."""
        e = [self.xp.zeros(1, dtype=self.params.dtype) for _ in range(4)]
        self.backend.kernels.adam_update(*e, 0.0, self.beta1, self.beta2, self.eps, 1, 0.0, 0)

    def _update(self, grad, lr):
        self.backend.kernels.adam_update(
            self.params, grad, self.m, self.v, lr, self.beta1, self.beta2, self.eps, self.t,
            self.weight_decay, self.n_decay,
        )

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
