"""fastmlp: multilayer perceptrons on MNIST-style data with hand-written backprop,
on the CPU (NumPy + Numba) or an NVIDIA GPU (CuPy + Numba CUDA), one code path.

    >>> import fastmlp
    >>> result = fastmlp.run(fastmlp.TrainConfig(epochs=5))  # what 'fastmlp train --epochs 5' runs
    >>> result.model, result.history, result.out

    >>> ds = fastmlp.load_mnist()
    >>> model = fastmlp.MLP((784, 128, 64, 10), device="cpu")
    >>> fastmlp.Trainer(model, lr=0.05).fit(ds.x_train, ds.y_train, epochs=5, X_test=ds.x_test, y_test=ds.y_test)
    >>> model.predict(ds.x_test)
"""

import importlib.util as _util

try:
    from . import kernels  # the repository's kernels/, installed as fastmlp.kernels
except ImportError:
    if _util.find_spec(f"{__name__}.kernels") is not None:
        raise  # it is there and failed for its own reason
    raise ModuleNotFoundError(
        "fastmlp.kernels is missing: this fastmlp was imported from a source folder that was not installed "
        "(kernels/ becomes fastmlp.kernels on install); run 'pip install -e .' in the repository",
        name=f"{__name__}.kernels") from None

from .backend import Backend, get_backend
from .config import TrainConfig
from .data import Dataset, load_dataset, load_fashion_mnist, load_mnist
from .errors import ConfigError, DataError, DeviceError, DivergenceError, FastMLPError
from .gradcheck import gradcheck
from .io import load, save
from .model import MLP
from .trainer import Trainer, evaluate

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "ConfigError",
    "DataError",
    "Dataset",
    "DeviceError",
    "DivergenceError",
    "FastMLPError",
    "MLP",
    "MLPClassifier",
    "MLPRegressor",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "get_backend",
    "gradcheck",
    "load",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "resume",
    "run",
    "save",
]


def __getattr__(name):
    # The estimators need scikit-learn, so they are imported on first use only:
    # ``import fastmlp`` never imports scikit-learn.
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators  # ImportError naming the 'sklearn' extra if it is missing

        return getattr(estimators, name)
    if name in ("run", "resume", "TrainResult"):
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
