"""One training step as a fixed list of kernel calls, replayed eagerly or as a CUDA graph.

A step is, in order (``kernels/__init__.py`` has the signatures):

    gather_batch                 rows perm[s B : s B + k] of X, y  (s = state[0], on the device),
                                 uint8 pixels scaled to [0, 1] on the way (gather_csr for a
                                 sparse X, a DeviceCSR: only these rows are densified)
    linear_forward  x L          act(a @ W + b), layer by layer (+ dropout after each hidden
                                 layer, if asked: its mask from (seed, state[1], layer))
    softmax_xent | logistic_xent logits -> dlogits, loss per row (the model's loss_op; softmax_xent
                                 with label smoothing, if asked)
    scale_rows                   only for weighted rows: row i of both times row_scale[s B + i]
    sum_into                     step_loss[s] = sum of the rows' losses
    linear_backward, backward_input   per layer, last to first (+ dropout's mask on each
                                 hidden gradient)
    sum_into (squared)           only if asked: weight_sq[s] = |W|^2 before the update
    sgd_update | adam_update     (lr, weight decay) = rates[s], t = state[1] + 1
    advance                      state += 1

Every argument is fixed when the list is built: the same preallocated buffers,
views and numbers every step. What changes from step to step lives on the
device (``state``, ``rates``, ``perm``, ``row_scale``), and the host writes it
once per epoch. So on CUDA the list can be captured once (one graph for a full
batch, one for the short last batch, or the whole epoch as one graph) and
replayed; nothing per step comes from the host. On the CPU the same list runs
call by call.
"""

from __future__ import annotations

import functools

import numpy as np

from .errors import ConfigError
from .model import Dropout, backward_pass, forward_pass, input_scale
from .sparse import DeviceCSR

GRAPH_MODES = ("auto", "on", "off")
GRAPH_SCOPES = ("step", "epoch")


class _Recorder:
    """Stands in for a KernelSet and writes down each call instead of making it,
    with its array arguments wrapped for the device once (``wrap``): ``calls`` as
    (kernel function, arguments), and ``runs`` as functions of no arguments that
    make those calls. A kernel function with ``bind`` (the CUDA launchers) works its
    launch out once there (grid, views, scalars), so a replay only launches."""

    def __init__(self, kernels, wrap):
        self._kernels, self._wrap, self.calls, self.runs = kernels, wrap, [], []

    def __getattr__(self, name):
        fn = getattr(self._kernels, name)

        def record(*args):
            args = tuple(self._wrap(a) for a in args)
            self.calls.append((fn, args))
            self.runs.append(fn.bind(*args) if hasattr(fn, "bind") else functools.partial(fn, *args))

        return record


def run_calls(runs):
    for run in runs:
        run()


def check_graph_options(cuda_graph, graph_scope):
    if cuda_graph not in GRAPH_MODES:
        raise ConfigError(f"cuda_graph must be one of {', '.join(GRAPH_MODES)}, got {cuda_graph!r}")
    if graph_scope not in GRAPH_SCOPES:
        raise ConfigError(f"graph_scope must be one of {', '.join(GRAPH_SCOPES)}, got {graph_scope!r}")


class TrainStep:
    """The buffers and the call lists of one training set (X, y) and batch size.

    X (n, d0), y (n,) are device arrays (X float, or uint8 pixels); ``batch`` <= n.
    After :meth:`start_epoch` (the epoch's permutation, learning rates, weight decays
    and step count), :meth:`run` makes one step and :meth:`run_epoch` all of them;
    ``step_loss`` then holds each step's summed loss. ``track_weight_sq``: also sum
    |W|^2 before each update into ``weight_sq``. ``scale_rows``: each row's loss and
    gradient times its entry of ``row_scale`` (n,), in batch order, which
    :meth:`start_epoch` fills (sample weights). ``dropout`` (a probability) and
    ``label_smoothing`` (softmax loss only) regularise the training step only;
    ``seed`` picks the dropout masks.
    """

    def __init__(self, model, optimizer, X, y, batch, track_weight_sq=False, scale_rows=False, dropout=0.0,
                 label_smoothing=0.0, seed=0):
        bk, xp = model.backend, model.xp
        self.model, self.optimizer, self.backend = model, optimizer, bk
        self.X, self.y = X, y
        self.n = n = X.shape[0]
        self.batch = B = min(batch, n)
        self.steps = -(-n // B)
        self.rows = np.full(self.steps, B, dtype=np.int64)
        self.rows[-1] = n - B * (self.steps - 1)
        self.ws = model.workspace(B)
        self.grads = xp.zeros_like(model.params)
        self.grad_layers = model.views(self.grads)
        self.perm = xp.zeros(n, dtype=np.int64)
        self.rates = xp.zeros((self.steps, 2), dtype=model.dtype)  # (lr, weight decay) of each step
        self.state = xp.zeros(2, dtype=np.int64)
        self.step_loss = xp.zeros(self.steps, dtype=model.dtype)
        self.weight_sq = xp.zeros(self.steps, dtype=model.dtype) if track_weight_sq else None
        self.row_scale = xp.zeros(n, dtype=model.dtype) if scale_rows else None
        if label_smoothing and model.loss_op != "softmax_xent":
            raise ConfigError(f"label smoothing needs the softmax loss, not loss={model.loss!r}")
        self.recipe = (float(dropout), float(label_smoothing), int(seed))
        self.dropout = None
        if dropout:
            outs = [None] + [xp.zeros((B, d), dtype=model.dtype) for d in model.sizes[1:-1]]
            self.dropout = Dropout(float(dropout), int(seed), self.state, outs)
        self.settings = optimizer.settings()
        # the full step and, when n is not a multiple of B, the short last one
        recorded = {int(k): self._record(int(k)) for k in set(self.rows.tolist())}
        self.calls = {k: rec.calls for k, rec in recorded.items()}  # (function, arguments), to inspect
        self.runs = {k: rec.runs for k, rec in recorded.items()}  # the same calls, ready to replay
        self.graphs = None
        self.graph_info = {"mode": "eager", "scope": None, "reason": "not captured"}

    def _record(self, k):
        m, ws = self.model, self.ws
        rec = _Recorder(self.backend.kernels, self.backend.kernel_array)
        xb, yb = ws.x[:k], ws.y[:k]
        if isinstance(self.X, DeviceCSR):
            X = self.X
            rec.gather_csr(X.data, X.indices, X.indptr, self.y, self.perm, self.state, self.batch, xb, yb)
        else:
            rec.gather_batch(self.X, self.y, self.perm, self.state, self.batch, xb, yb, input_scale(self.X.dtype))
        logits = forward_pass(rec, m.layers, m.codes, xb, ws.acts, self.dropout)
        smoothing = (self.recipe[1],) if m.loss_op == "softmax_xent" else ()
        getattr(rec, m.loss_op)(logits, yb, ws.row_loss[:k], *smoothing)
        if self.row_scale is not None:
            rec.scale_rows(logits, ws.row_loss[:k], self.row_scale, self.state, self.batch)
        rec.sum_into(ws.row_loss[:k], self.step_loss, self.state, False)
        backward_pass(rec, m.layers, m.codes, xb, ws.acts, ws.dacts, self.grad_layers, self.dropout)
        if self.weight_sq is not None:
            rec.sum_into(m.params[: m.n_weights], self.weight_sq, self.state, True)
        self.optimizer.update(rec, self.grads, self.rates, self.state)
        rec.advance(self.state)
        return rec

    def still_valid(self, X, y, optimizer):
        """Whether this step can train on (X, y) with ``optimizer`` as it is now."""
        same = self.X is X and self.y is y and self.optimizer is optimizer
        return same and optimizer.settings() == self.settings

    def start_epoch(self, perm, lrs, wds, t, row_scale=None):
        """Write the epoch's permutation (device array of n row indices), the learning
        rate and weight decay of each step (host, ``steps`` numbers each), the steps
        done so far and, for a step that scales rows, the factor of each row in batch
        order (n numbers, host or device)."""
        bk = self.backend
        if (row_scale is None) != (self.row_scale is None):
            raise ValueError("row_scale must be given exactly when the step was built with scale_rows=True")
        if row_scale is not None:
            self.row_scale[...] = bk.asarray(row_scale, dtype=self.row_scale.dtype)
        self.perm[...] = perm
        self.rates[...] = bk.asarray(np.stack([lrs, wds], axis=1).astype(self.rates.dtype))
        self.state[...] = bk.asarray(np.array([0, t], dtype=np.int64))

    def run(self, s):
        """Step s of the epoch (state[0] must be s)."""
        if self.graphs is not None and self.graph_info["scope"] == "step":
            self.graphs[int(self.rows[s])].launch(stream=self.backend.stream)
        else:
            run_calls(self.runs[int(self.rows[s])])

    def run_epoch(self, on_step=None):
        """Every step of the epoch, in order; ``on_step()`` after each one that the
        host sees (all at once for a whole-epoch graph)."""
        if self.graphs is not None and self.graph_info["scope"] == "epoch":
            self.graphs["epoch"].launch(stream=self.backend.stream)
            if on_step is not None:
                for _ in range(self.steps):
                    on_step()
            return
        for s in range(self.steps):
            self.run(s)
            if on_step is not None:
                on_step()

    # -- warm-up and capture ---------------------------------------------------------

    def warm_up(self):
        """Run each distinct step once (compiling every kernel for these exact array
        layouts, and allocating any scratch the kernels keep), then put the model
        and optimiser back exactly as they were."""
        bk = self.backend
        keep = [self.model.params, *self.optimizer.buffers()]
        saved = [a.copy() for a in keep]
        self.perm[...] = bk.xp.arange(self.n, dtype=np.int64)
        self.rates[...] = 0
        for s in sorted({0, self.steps - 1}):
            self.state[...] = bk.asarray(np.array([s, self.optimizer.t], dtype=np.int64))
            run_calls(self.runs[int(self.rows[s])])
        for a, b in zip(keep, saved):
            a[...] = b
        bk.synchronize()

    def capture(self, mode, scope):
        """Capture the step (or the epoch) as CUDA graphs when ``mode`` asks for it.

        mode 'off': eager. 'on': capture or raise a ConfigError saying why not.
        'auto': capture on a GPU where it works, else eager with the reason in
        ``graph_info``. Call after :meth:`warm_up`."""
        check_graph_options(mode, scope)
        bk = self.backend
        if mode == "off":
            self.graph_info = {"mode": "eager", "scope": None, "reason": "cuda_graph='off'"}
            return
        if not bk.is_gpu:
            if mode == "on":
                raise ConfigError(f"cuda_graph='on' needs a CUDA device; this model is on {bk.name}")
            self.graph_info = {"mode": "eager", "scope": None, "reason": "CUDA graphs exist only on a GPU"}
            return
        try:
            if scope == "step":
                self.graphs = {k: bk.capture(lambda runs=runs: run_calls(runs)) for k, runs in self.runs.items()}
            else:
                order = [self.runs[int(k)] for k in self.rows]
                self.graphs = {"epoch": bk.capture(lambda: [run_calls(c) for c in order])}
        except Exception as exc:  # CUDA/CuPy/Numba each raise their own types
            self.graphs = None
            reason = f"capture failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if mode == "on":
                raise ConfigError(f"cuda_graph='on' but the step could not be captured ({reason}); "
                                  "use cuda_graph='auto' or 'off'") from None
            self.graph_info = {"mode": "eager", "scope": None, "reason": reason}
            return
        self.graph_info = {"mode": "graph", "scope": scope, "reason": "captured"}
