"""Hidden-layer activations, looked up by name once, when a model is built.

Each activation has an in-place forward (``z`` -> ``f(z)``, written with the
array module so it runs on either device) and an in-place backward that takes
the *forward output* and the incoming gradient (a Numba kernel of the device).
Keeping only the output is enough for all of them, so the forward pass stores
one buffer per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable  # forward(z): z <- f(z), in place
    backward: Callable  # backward(out, dout): dout <- dout * f'(z), in place
    default_init: str  # the weight init that keeps activations' scale for this f


def _relu_forward(xp):
    def forward(z):
        xp.maximum(z, 0, out=z)

    return forward


def _sigmoid_forward(xp):
    # sigmoid(z) = (1 + tanh(z / 2)) / 2: no exp, so no overflow warning for large |z|.
    def forward(z):
        z *= 0.5
        xp.tanh(z, out=z)
        z *= 0.5
        z += 0.5

    return forward


def _tanh_forward(xp):
    def forward(z):
        xp.tanh(z, out=z)

    return forward


def _identity(*_):
    pass


NAMES = ("relu", "sigmoid", "tanh", "identity")
ALIASES = {"logistic": "sigmoid"}


def get_activation(name, backend):
    """The Activation called ``name`` for ``backend``; unknown names are a ConfigError."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    xp, k = backend.xp, backend.kernels
    if key == "relu":
        return Activation("relu", _relu_forward(xp), k.relu_backward, "he")
    if key == "sigmoid":
        return Activation("sigmoid", _sigmoid_forward(xp), k.sigmoid_backward, "xavier")
    if key == "tanh":
        return Activation("tanh", _tanh_forward(xp), k.tanh_backward, "xavier")
    if key == "identity":
        return Activation("identity", _identity, _identity, "xavier")
    raise ConfigError(f"unknown activation {name!r}: choose one of {', '.join(NAMES)}")
