"""Hidden-layer activations, looked up by name once, when a model is built.

An activation is a code for the fused bias + activation forward kernel
(``kernels/bias_act_forward.py``) and an in-place backward kernel that takes the
*forward output* and the incoming gradient. Keeping only the output is enough
for all of them, so the forward pass stores one buffer per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import kernels
from .errors import ConfigError


@dataclass(frozen=True)
class Activation:
    name: str
    code: int  # for kernels.bias_act_forward
    backward: Callable  # backward(out, dout): dout <- dout * f'(z), in place
    default_init: str  # the weight init that keeps activations' scale for this f


def _no_op(out, dout):
    pass


NAMES = ("relu", "sigmoid", "tanh", "identity")
ALIASES = {"logistic": "sigmoid"}


def get_activation(name, backend):
    """The Activation called ``name`` for ``backend``; unknown names are a ConfigError."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    k = backend.kernels
    if key == "relu":
        return Activation("relu", kernels.RELU, k.relu_backward, "he")
    if key == "sigmoid":
        return Activation("sigmoid", kernels.SIGMOID, k.sigmoid_backward, "xavier")
    if key == "tanh":
        return Activation("tanh", kernels.TANH, k.tanh_backward, "xavier")
    if key == "identity":
        return Activation("identity", kernels.IDENTITY, _no_op, "xavier")
    raise ConfigError(f"unknown activation {name!r}: choose one of {', '.join(NAMES)}")
