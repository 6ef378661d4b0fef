"""The error types fastmlp raises for problems a user can fix.

Every message is one line that says what is wrong and what to do about it.
The CLI prints these without a traceback; anything else is a bug.
"""


class FastMLPError(Exception):
    """Base class: an expected, user-fixable problem."""


class DataError(FastMLPError, ValueError):
    """A data file or folder is missing, truncated, corrupt or of the wrong kind."""


class DeviceError(FastMLPError, RuntimeError):
    """The requested device is unknown or not usable on this machine."""


class ConfigError(FastMLPError, ValueError):
    """A training setting is out of range or inconsistent with the data."""


class DivergenceError(FastMLPError, FloatingPointError):
    """The loss became NaN or infinite during training."""


def one_line(obj) -> str:
    """``str(obj)`` squeezed onto one line (messages must be one line)."""
    return " ".join(str(obj).split())


def divergence_error(trainer, epoch, losses, step, lr):
    """The DivergenceError for a non-finite loss at ``step`` (0-based) of ``epoch``,
    whose advice names the likely cause.

    ``losses`` holds the epoch's per-step mean losses and ``lr`` the learning rate
    at the bad step. The causes, checked in this order:

    * weight decay: plain and momentum SGD multiply each weight by (1 - lr * decay)
      every step, which overshoots zero and grows once lr * decay >= 1; the decay
      is blamed when it is the outlier (>= 1; usual values are 1e-5 to 1e-2),
      else the learning rate is;
    * the initial weights or the inputs: the loss before the first update is far
      above ln(classes), what a fresh model with sane scales starts at;
    * otherwise the learning rate.
    """
    import math

    history = trainer.history.get("iter_loss") or []
    first = history[0] if history else losses[0]
    decay = getattr(trainer.optimizer, "weight_decay", 0.0)
    model = trainer.model
    where = f"loss became {losses[step]} at epoch {epoch}, step {step + 1} of {len(losses)}; "
    if trainer.optimizer_name in ("sgd", "momentum", "nesterov") and decay >= 1 and max(lr, trainer.lr) * decay >= 1:
        peak = max(lr, trainer.lr)
        advice = (f"the weight decay is too strong: with learning rate {peak:g} a decay of {decay:g} pushes every "
                  f"weight past zero each step; lower the weight decay (--weight-decay) well below {1 / peak:g}")
    elif not math.isfinite(first) or first > 100 * math.log(model.n_classes):
        scale = (f"the initial weights (init {model.init}, std {model.init_std:g}) or " if model.init == "normal" else "")
        advice = (f"the loss before the first update was already {first:.3g} (a fresh model starts near "
                  f"{math.log(model.n_classes):.2g}): {scale}the inputs are too large; "
                  + ("use --init he or xavier, or a smaller --init-std, and " if model.init == "normal" else "")
                  + "scale the inputs to about [0, 1]")
    else:
        advice = f"lower the learning rate (now {lr:g}) or check the data for extreme values"
    return DivergenceError(where + advice)
