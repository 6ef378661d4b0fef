"""The multilayer perceptron: parameters, forward, hand-written backward.

Parameters live in one flat buffer (all weights first, then all biases), and
``model.layers`` is a list of :class:`Layer` views into it. Gradients use the
same layout, so an optimiser updates every layer with a few whole-buffer
operations, and weight decay touches ``params[:n_weights]`` only.

Shapes, for sizes (d0, d1, ..., dL) and a batch of n rows:
    layers[l].W  (d_l, d_{l+1})      layers[l].b  (d_{l+1},)
    x            (n, d0)             logits       (n, dL)
Hidden layers apply the activation; the last layer's output is the logits,
which the fused loss kernel turns into dlogits in place. Two losses train on
integer class labels y (n,): softmax cross-entropy over dL classes, and
(``loss="logistic"``, dL = 1) sigmoid + binary log-loss, the two-class model of
scikit-learn's MLPClassifier. Three train on a float target matrix Y (n, dL)
(:data:`VALUE_LOSSES`): ``"multilabel"`` (dL sigmoid outputs, a binary log-loss
each), ``"squared_error"`` (identity output) and ``"poisson"`` (exponential
output, half Poisson deviance), scikit-learn's multi-label classifier and its
two regression losses.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import checks
from .activations import get_activation
from .backend import get_backend, on_device
from .errors import ConfigError
from .kernels import IDENTITY

INITS = ("he", "xavier", "normal")
# loss -> its fused KernelSet op
LOSSES = {"softmax": "softmax_xent", "logistic": "logistic_xent", "multilabel": "multilabel_xent",
          "squared_error": "squared_error", "poisson": "poisson_deviance"}
VALUE_LOSSES = ("multilabel", "squared_error", "poisson")  # these train on a float target matrix (n, dL)
UINT8_SCALE = 1 / 255  # uint8 features are pixel intensities: 0..255 -> [0, 1]


def input_scale(dtype):
    """What features of ``dtype`` are multiplied by on their way into the model."""
    return UINT8_SCALE if np.dtype(dtype) == np.uint8 else 1.0


class Layer(NamedTuple):
    W: object  # (n_in, n_out)
    b: object  # (n_out,)


class Workspace:
    """Buffers for one batch size, allocated once and reused every step.

    acts[l]   (B, d_l) for l = 1..L: the output of layer l (acts[L] holds the
              logits, then dlogits after the loss kernel)
    dacts[l]  (B, d_l) for l = 1..L-1: gradient w.r.t. layer l's output
    row_loss  (B,) loss per row;  x, y: the gathered batch (y (B,) int64 labels, or
              (B, dL) float targets with ``value_targets``)
    """

    def __init__(self, xp, sizes, batch_size, dtype, value_targets=False):
        self.batch_size = batch_size
        self.x = xp.zeros((batch_size, sizes[0]), dtype=dtype)
        self.y = xp.zeros((batch_size, sizes[-1]), dtype=dtype) if value_targets else xp.zeros(batch_size, dtype=np.int64)
        self.acts = [None] + [xp.zeros((batch_size, d), dtype=dtype) for d in sizes[1:]]
        self.dacts = [None] + [xp.zeros((batch_size, d), dtype=dtype) for d in sizes[1:-1]] + [None]
        self.row_loss = xp.zeros(batch_size, dtype=dtype)


class Dropout(NamedTuple):
    """Inverted dropout on every hidden layer's output, in training (kernels/dropout.py).

    outs[l] (B, d_l) for l = 1..L-1 holds layer l's dropped output, which the next
    layer reads; acts[l] keeps the undropped one for the activation's derivative."""

    p: float
    seed: int
    state: object  # the device step counter: state[1] picks the step's masks
    outs: list


def forward_pass(k, layers, codes, x, acts, dropout=None):
    """Logits (n, dL) for x (n, d0): one ``linear_forward`` kernel per layer, and
    with ``dropout`` (a Dropout) a ``dropout`` kernel after each hidden one.

    k: a KernelSet; layers: Layer(W, b) views; codes: the activation code of each
    layer (IDENTITY for the last); acts: Workspace.acts, filled for the backward pass."""
    n, a = x.shape[0], x
    for l, (layer, code) in enumerate(zip(layers, codes)):
        z = acts[l + 1][:n]
        k.linear_forward(a, layer.W, layer.b, z, code)
        a = z
        if dropout is not None and l + 1 < len(layers):
            a = dropout.outs[l + 1][:n]
            k.dropout(z, a, dropout.state, dropout.seed, l + 1, dropout.p)
    return a


def backward_pass(k, layers, codes, x, acts, dacts, grads, dropout=None):
    """Fill ``grads`` (Layer views) with the gradient of the mean loss, given dlogits
    in acts[L][:n]: per layer, ``linear_backward`` (dW, db), then ``backward_input``
    (the gradient w.r.t. the layer's input, through the previous activation), which
    still reads the old W: the optimiser runs after the whole backward pass. With
    ``dropout``, the layers read the dropped outputs and each hidden gradient goes
    through the forward pass's mask again."""
    n = x.shape[0]
    delta = acts[len(layers)][:n]
    for l in range(len(layers) - 1, -1, -1):
        a_in = x if l == 0 else (acts if dropout is None else dropout.outs)[l][:n]
        k.linear_backward(a_in, delta, grads[l].W, grads[l].b)
        if l > 0:
            d_in = dacts[l][:n]
            k.backward_input(delta, layers[l].W, acts[l][:n], d_in, codes[l - 1])
            if dropout is not None:
                k.dropout(d_in, d_in, dropout.state, dropout.seed, l, dropout.p)
            delta = d_in


def check_sizes(sizes):
    """A tuple of at least two positive ints, or a ConfigError saying what is wrong."""
    try:
        out = tuple(int(s) for s in sizes)
    except (TypeError, ValueError):
        raise ConfigError(f"sizes must be a list of integers like 784,128,64,10; got {sizes!r}") from None
    if len(out) < 2 or any(s < 1 for s in out) or any(float(s) != float(o) for s, o in zip(sizes, out)):
        raise ConfigError(f"sizes must be at least two positive integers like 784,128,64,10; got {sizes!r}")
    return out


def sigmoid(xp, z):
    """1 / (1 + exp(-z)) from e = exp(-|z|), which never overflows. Where exp(-z) itself
    would overflow the result is 0, as scipy's expit (scikit-learn's logistic) gives."""
    e = xp.exp(-abs(z))
    p = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return xp.where(z < -np.log(np.finfo(p.dtype).max), 0, p).astype(p.dtype, copy=False)


def two_class_proba(xp, z):
    """(n, 2) probabilities [1 - p, p] from one logistic output z (n, 1), p = sigmoid(z)."""
    p = sigmoid(xp, z)
    return xp.hstack([1 - p, p])


def output_activation(xp, loss, z):
    """The output activation of ``loss`` applied to logits z (n, dL) in place (returned)."""
    if loss == "softmax":
        z -= z.max(axis=1, keepdims=True)
        xp.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
    elif loss in ("logistic", "multilabel"):
        z[...] = sigmoid(xp, z)
    elif loss == "poisson":
        xp.exp(z, out=z)
    return z


def init_weights(rng, n_in, n_out, scheme, std, dtype):
    """One weight matrix (n_in, n_out) drawn on the host."""
    if scheme == "he":  # keeps the variance of ReLU activations across layers
        w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
    elif scheme == "xavier":  # Glorot uniform, for sigmoid/tanh
        limit = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, (n_in, n_out))
    elif scheme == "normal":
        w = rng.standard_normal((n_in, n_out)) * std
    else:
        raise ConfigError(f"unknown init {scheme!r}: choose one of {', '.join(INITS)}")
    return w.astype(dtype)


class MLP:
    """A fully connected net with sizes (d0, ..., dL) on one device.

    >>> model = MLP((784, 128, 64, 10), activation="relu", device="cpu", seed=0)
    >>> model.predict(x_test)   # labels, NumPy
    """

    def __init__(self, sizes, activation="relu", init=None, init_std=0.01, dtype="float32", device=None, seed=0,
                 loss="softmax"):
        self.backend = get_backend(device)
        self.sizes = check_sizes(sizes)
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
        if loss == "logistic" and self.sizes[-1] != 1:
            raise ConfigError(f"loss='logistic' is one output unit for two classes: make the last size 1, got {sizes!r}")
        self.loss = loss
        self.loss_op = LOSSES[loss]  # the training step records this KernelSet op by name
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {dtype!r}")
        self.activation = get_activation(activation, self.backend)
        self.init = (init or self.activation.default_init).lower()
        if self.init not in INITS:
            raise ConfigError(f"unknown init {init!r}: choose one of {', '.join(INITS)}")
        self.init_std = checks.positive("init_std", init_std)
        self.params = self.backend.xp.zeros(self.n_params, dtype=self.dtype)
        self.layers = self.views(self.params)
        self._eval_ws = None
        self.class_names = None  # set by the trainer or fastmlp.load, for labelled output
        self.reset_parameters(seed)

    @property
    def xp(self):
        return self.backend.xp

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def loss_kernel(self):
        """The fused loss kernel of this device, ``(logits, labels, row_loss)``: logits ->
        dlogits in place, row_loss <- loss of each row."""
        return getattr(self.backend.kernels, self.loss_op)

    @property
    def n_classes(self):
        """Labels run over 0..n_classes-1: the outputs, or 2 for one logistic output."""
        return 2 if self.loss == "logistic" else self.sizes[-1]

    @property
    def value_targets(self):
        """True when the loss trains on a float target matrix (n, dL), not on labels."""
        return self.loss in VALUE_LOSSES

    @property
    def n_weights(self):
        return sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def n_params(self):
        return self.n_weights + sum(self.sizes[1:])

    def views(self, flat):
        """Split a flat buffer of n_params into a list of Layer(W, b) views."""
        layers, w_at, b_at = [], 0, self.n_weights
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            W = flat[w_at : w_at + n_in * n_out].reshape(n_in, n_out)
            b = flat[b_at : b_at + n_out]
            layers.append(Layer(W, b))
            w_at += n_in * n_out
            b_at += n_out
        return layers

    @on_device  # CuPy work on the backend's stream, from any thread
    def reset_parameters(self, seed=0):
        """He / Xavier / normal(std) weights and zero biases, drawn on the host with
        ``numpy.random.default_rng(seed)`` so every device starts from the same values."""
        rng = np.random.default_rng(None if seed is None else checks.integer("seed", seed, 0))
        host = np.zeros(self.n_params, dtype=self.dtype)
        for layer in self.views(host):
            layer.W[...] = init_weights(rng, *layer.W.shape, self.init, self.init_std, self.dtype)
        self.set_flat_params(host)

    @on_device
    def set_flat_params(self, host_flat):
        self.params[...] = self.backend.asarray(host_flat, dtype=self.dtype)

    @on_device
    def finite_flag(self):
        """Whether every parameter is finite, as a 0-d boolean on the model's device: one
        reduction over the flat buffer, queued like any other device work (NumPy or
        CuPy alike), so ``bool()`` of it waits only for what is already queued. The
        trainer reads it once per epoch, with the epoch's losses."""
        return self.xp.isfinite(self.params).all()

    @on_device
    def get_layers(self):
        """The parameters as a list of (W, b) NumPy arrays (copies)."""
        return [(np.array(self.backend.to_host(l.W)), np.array(self.backend.to_host(l.b))) for l in self.layers]

    def workspace(self, batch_size):
        return Workspace(self.xp, self.sizes, batch_size, self.dtype, self.value_targets)

    @property
    def codes(self):
        """The activation code of each layer for the kernels: the hidden activation, then IDENTITY."""
        return (self.activation.code,) * (self.n_layers - 1) + (IDENTITY,)

    @on_device
    def forward(self, x, ws):
        """Logits (n, dL) for x (n, d0) with n <= ws.batch_size; keeps each layer's
        output in ``ws.acts`` for the backward pass."""
        return forward_pass(self.backend.kernels, self.layers, self.codes, x, ws.acts)

    @on_device
    def backward(self, x, ws, grads):
        """Fill ``grads`` (a list of Layer views, like ``self.layers``) with the gradient
        of the mean loss. Expects ``ws.acts[L][:n]`` to hold dlogits (the loss kernel
        writes it there); overwrites ``ws.dacts``."""
        backward_pass(self.backend.kernels, self.layers, self.codes, x, ws.acts, ws.dacts, grads)

    @on_device
    def loss_and_grad(self, x, y, ws, grads, row_scale=None):
        """Cross-entropy of each row (a device view (n,), left there so no sync is
        forced) and the gradient of their mean into ``grads``.

        x (n, d0) and y (n,) integer labels, both on this device. ``row_scale`` (n,),
        if given (a device array of the model's dtype), multiplies each row's loss and
        its gradient (sample weights), with the training step's ``scale_rows`` kernel."""
        n = x.shape[0]
        logits = self.forward(x, ws)
        row_loss = ws.row_loss[:n]
        self.loss_kernel(logits, y, row_loss)
        if row_scale is not None:
            self.backend.kernels.scale_rows(logits, row_loss, row_scale, self.xp.zeros(2, dtype=np.int64), n)
        self.backward(x, ws, grads)
        return row_loss

    @on_device
    def logits(self, X, batch_size=8192):
        """Logits for all rows of X (host or device array; uint8 is scaled by 1/255 as in
        training), in chunks, as a device array."""
        xp = self.xp
        scale = input_scale(getattr(X, "dtype", np.float64))
        X = self.backend.asarray(X, dtype=self.dtype)
        if scale != 1:
            X *= self.dtype.type(scale)  # the gather kernel's conversion: to the dtype, then times scale
        self._check_features(X)
        n = X.shape[0]
        bs = max(1, min(batch_size, n))
        if self._eval_ws is None or self._eval_ws.batch_size < bs:
            self._eval_ws = self.workspace(bs)
        out = xp.empty((n, self.sizes[-1]), dtype=self.dtype)
        for start in range(0, n, bs):
            out[start : start + bs] = self.forward(X[start : start + bs], self._eval_ws)
        return out

    @on_device
    def outputs(self, X, batch_size=8192):
        """The output layer's activations for all rows of X, as a device array: softmax
        probabilities, sigmoid probabilities (one column per logistic output), the
        identity (squared error) or exp (Poisson) of the logits."""
        z = self.logits(X, batch_size)
        return output_activation(self.xp, self.loss, z)

    @on_device
    def predict_proba(self, X, batch_size=8192):
        """Class probabilities (n, n_classes) as a NumPy array."""
        z = self.logits(X, batch_size)
        if self.loss == "logistic":
            return self.backend.to_host(two_class_proba(self.xp, z))
        z -= z.max(axis=1, keepdims=True)
        p = self.xp.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return self.backend.to_host(p)

    @on_device
    def predict(self, X, batch_size=8192):
        """Predicted class index (n,) as a NumPy int64 array."""
        z = self.logits(X, batch_size)
        return self.backend.to_host(z[:, 0] > 0 if self.loss == "logistic" else z.argmax(axis=1)).astype(np.int64)

    def _check_features(self, X):
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ConfigError(
                f"input has shape {tuple(X.shape)} but the model expects (n, {self.sizes[0]}); "
                "flatten images to rows of the model's first size"
            )
        if not bool(self.xp.isfinite(X).all()):
            raise ConfigError("input contains NaN or inf; clean or impute it before predicting")

    def to(self, device):
        """A copy of this model on another device."""
        other = MLP(self.sizes, self.activation.name, self.init, self.init_std, self.dtype, device, loss=self.loss)
        other.set_flat_params(self.backend.to_host(self.params))
        return other

    def __repr__(self):
        return (
            f"MLP(sizes={self.sizes}, activation={self.activation.name!r}, init={self.init!r}, "
            f"dtype={self.dtype.name}, device={self.backend.name!r}, loss={self.loss!r})"
        )
