"""The systems a benchmark compares, each behind the same small interface.

    system = make(name, device, ds, sizes, batch_size, lr, momentum, seed)
    system.epoch()            one epoch of mini-batch SGD with momentum, synchronised
    system.accuracy()         test accuracy as a float

Every system trains the same net (ReLU hidden layers, softmax cross-entropy),
on the same float32 data, with the same batch size and optimiser, and shuffles
every epoch. A system whose package is missing raises :class:`Unavailable`,
which the benchmarks report as a skipped row.

fastmlp runs as the Trainer's default (``fastmlp``) and, on a GPU, in each of
its execution modes side by side: ``fastmlp-eager`` (kernel launches per step),
``fastmlp-graph`` (each step a replayed CUDA graph) and ``fastmlp-graph-epoch``
(the whole epoch one graph). ``torch-compile`` is PyTorch with
``torch.compile(mode="reduce-overhead")``, which uses CUDA graphs: CUDA only.
"""

from __future__ import annotations

import functools

import numpy as np

import fastmlp


class Unavailable(Exception):
    """This system cannot run here (package or device missing); the message says why."""


# The Trainer's execution modes on a GPU (label, Trainer keyword arguments).
GRAPH_MODES = {
    "eager": ("eager", {"cuda_graph": "off"}),
    "graph": ("CUDA graph per step", {"cuda_graph": "on", "graph_scope": "step"}),
    "graph-epoch": ("CUDA graph per epoch", {"cuda_graph": "on", "graph_scope": "epoch"}),
}


def make_trainer(model, mode=None, **kwargs):
    """fastmlp.Trainer in one of GRAPH_MODES (None: the Trainer's default); Unavailable
    when this fastmlp's Trainer has no such option yet."""
    options = GRAPH_MODES[mode][1] if mode else {}
    # the peers' recipe is plain mini-batch momentum SGD: none of the default preset's
    # weight decay, warm-up and dropout (the Trainer's defaults) unless asked for
    kwargs = {"weight_decay": 0.0, "warmup": 0.0, "dropout": 0.0, **kwargs}
    try:
        return fastmlp.Trainer(model, **kwargs, **options)
    except TypeError as exc:
        if options and any(k in str(exc) for k in options):
            raise Unavailable(f"this fastmlp's Trainer does not take {options} yet ({exc})") from None
        raise


class FastMLP:
    label = "fastmlp"

    def __init__(self, device, ds, sizes, batch_size, lr, momentum, seed, mode=None):
        try:
            self.backend = fastmlp.get_backend(device)
        except fastmlp.DeviceError as exc:
            raise Unavailable(str(exc)) from None
        if mode and not self.backend.is_gpu:
            raise Unavailable(f"the {GRAPH_MODES[mode][0]} mode is for a GPU; the CPU's row is 'fastmlp'")
        if mode:
            self.label = f"fastmlp ({GRAPH_MODES[mode][0]})"
        self.model = fastmlp.MLP(sizes, device=self.backend, seed=seed)
        self.trainer = make_trainer(
            self.model, mode, lr=lr, momentum=momentum, batch_size=batch_size, schedule="constant", seed=seed,
            progress=False, log=None,
        )
        self.x, self.y = self.trainer.prepare(ds.x_train, ds.y_train)
        self.x_test, self.y_test = self.trainer.prepare(ds.x_test, ds.y_test, "test data")
        self.lr = lr

    @property
    def compile_seconds(self):
        return self.trainer.history.get("compile_time", 0.0)

    def epoch(self):
        self.trainer.train_epoch(self.x, self.y, self.lr)  # reads the losses back: synchronised

    def accuracy(self):
        return fastmlp.evaluate(self.model, self.x_test, self.y_test)[1]

    def details(self):
        """Extra fields for the results row: the compile time, and what the Trainer
        ran as ({"mode": "graph" | "eager", "scope": ..., "reason": ...}), where it says."""
        info = {"compile_s": self.compile_seconds}
        if getattr(self.trainer, "graph_info", None) is not None:
            info["graph_info"] = self.trainer.graph_info
        return info


class NumpyTutorial:
    """The classic from-scratch NumPy MLP as tutorials write it: vectorised, float32,
    a fresh array for every intermediate, one parameter at a time."""

    label = "numpy (tutorial)"

    def __init__(self, device, ds, sizes, batch_size, lr, momentum, seed):
        if device != "cpu":
            raise Unavailable("the NumPy tutorial net runs on the CPU only")
        rng = np.random.default_rng(seed)
        self.W = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(b, dtype=np.float32) for b in sizes[1:]]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.x, self.y = ds.x_train, ds.y_train
        self.x_test, self.y_test = ds.x_test, ds.y_test
        self.batch, self.lr, self.mu = batch_size, np.float32(lr), np.float32(momentum)
        self.rng = rng

    def _forward(self, x):
        acts = [x]
        for i, (w, b) in enumerate(zip(self.W, self.b)):
            z = acts[-1] @ w + b
            acts.append(np.maximum(z, 0) if i < len(self.W) - 1 else z)
        return acts

    def epoch(self):
        n = len(self.x)
        perm = self.rng.permutation(n)
        for s in range(0, n, self.batch):
            idx = perm[s : s + self.batch]
            x, y = self.x[idx], self.y[idx]
            acts = self._forward(x)
            z = acts[-1]
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(y)), y] -= 1
            delta = p / len(y)
            for i in range(len(self.W) - 1, -1, -1):
                gW = acts[i].T @ delta
                gb = delta.sum(axis=0)
                if i:
                    delta = (delta @ self.W[i].T) * (acts[i] > 0)
                self.vW[i] = self.mu * self.vW[i] - self.lr * gW
                self.vb[i] = self.mu * self.vb[i] - self.lr * gb
                self.W[i] += self.vW[i]
                self.b[i] += self.vb[i]

    def accuracy(self):
        return float((self._forward(self.x_test)[-1].argmax(axis=1) == self.y_test).mean())


class Torch:
    label = "pytorch"

    def __init__(self, device, ds, sizes, batch_size, lr, momentum, seed):
        try:
            import torch
        except ImportError:
            raise Unavailable("PyTorch is not installed (pip install torch)") from None
        dev = "cuda" if device.startswith("cuda") else "cpu"
        if dev == "cuda" and not torch.cuda.is_available():
            raise Unavailable("PyTorch has no CUDA device here")
        self.torch = torch
        torch.manual_seed(seed)
        self.dev = torch.device(device if dev == "cuda" else "cpu")
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers).to(self.dev)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=momentum)
        self.loss = torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(ds.x_train).to(self.dev)
        self.y = torch.from_numpy(ds.y_train).to(self.dev)
        self.x_test = torch.from_numpy(ds.x_test).to(self.dev)
        self.y_test = torch.from_numpy(ds.y_test).to(self.dev)
        self.batch = batch_size
        self.forward = self.net
        self.step_begin = None

    def epoch(self):
        torch, n = self.torch, self.x.shape[0]
        perm = torch.randperm(n, device=self.dev)
        for s in range(0, n, self.batch):
            idx = perm[s : s + self.batch]
            if self.step_begin is not None:
                self.step_begin()
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.forward(self.x[idx]), self.y[idx]).backward()
            self.opt.step()
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def accuracy(self):
        with self.torch.no_grad():
            return float((self.net(self.x_test).argmax(1) == self.y_test).float().mean())


class TorchCompile(Torch):
    """The same PyTorch net with ``torch.compile(mode="reduce-overhead")``: Inductor's
    fused kernels, replayed as CUDA graphs. The optimiser step stays eager, as in
    the usual recipe; the warm-up epoch pays for the compile."""

    label = "pytorch compile (reduce-overhead)"

    def __init__(self, device, ds, sizes, batch_size, lr, momentum, seed):
        if not device.startswith("cuda"):
            raise Unavailable('torch.compile(mode="reduce-overhead") replays CUDA graphs: CUDA only')
        super().__init__(device, ds, sizes, batch_size, lr, momentum, seed)
        # dynamic=False: one static graph for the full batches and one for the shorter last batch
        self.forward = self.torch.compile(self.net, mode="reduce-overhead", dynamic=False)
        # each step's graph outputs may be overwritten by the next replay: mark where a step begins
        self.step_begin = getattr(self.torch.compiler, "cudagraph_mark_step_begin", None)

    def details(self):
        return {"torch_compile_mode": "reduce-overhead"}


class SklearnMLP:
    label = "scikit-learn"

    def __init__(self, device, ds, sizes, batch_size, lr, momentum, seed):
        if device != "cpu":
            raise Unavailable("scikit-learn runs on the CPU only")
        try:
            from sklearn.neural_network import MLPClassifier
        except ImportError:
            raise Unavailable("scikit-learn is not installed (pip install scikit-learn)") from None
        self.clf = MLPClassifier(
            hidden_layer_sizes=tuple(sizes[1:-1]), solver="sgd", momentum=momentum, nesterovs_momentum=False,
            learning_rate_init=lr, batch_size=batch_size, alpha=0.0, random_state=seed, shuffle=True,
        )
        self.x, self.y = ds.x_train, ds.y_train
        self.x_test, self.y_test = ds.x_test, ds.y_test
        self.classes = np.unique(ds.y_train)

    def epoch(self):
        self.clf.partial_fit(self.x, self.y, classes=self.classes)  # one partial_fit pass = one epoch

    def accuracy(self):
        return float(self.clf.score(self.x_test, self.y_test))


SYSTEMS = {
    "fastmlp": FastMLP,
    "fastmlp-eager": functools.partial(FastMLP, mode="eager"),
    "fastmlp-graph": functools.partial(FastMLP, mode="graph"),
    "fastmlp-graph-epoch": functools.partial(FastMLP, mode="graph-epoch"),
    "numpy": NumpyTutorial,
    "torch": Torch,
    "torch-compile": TorchCompile,
    "sklearn": SklearnMLP,
}


def make(name, device, ds, sizes, batch_size, lr, momentum, seed):
    return SYSTEMS[name](device, ds, sizes, batch_size, lr, momentum, seed)
