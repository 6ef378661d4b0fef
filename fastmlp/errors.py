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
    """The loss, or the parameters after an epoch's last update, became NaN or infinite in training."""


def one_line(obj) -> str:
    """``str(obj)`` squeezed onto one line (messages must be one line)."""
    return " ".join(str(obj).split())


def divergence_error(trainer, epoch, losses, step, lr):
    """The DivergenceError for a non-finite loss at ``step`` (0-based) of ``epoch``,
    whose advice names the likely cause (see :func:`_divergence_cause`).

    ``losses`` holds the epoch's per-step mean losses and ``lr`` the learning rate
    at the bad step."""
    where = f"loss became {losses[step]} at epoch {epoch}, step {step + 1} of {len(losses)}; "
    return DivergenceError(where + _divergence_cause(trainer, losses, lr, after_updates=False))


def parameter_divergence_error(trainer, epoch, losses, lr):
    """The DivergenceError for parameters that are NaN or inf after the last update of
    ``epoch`` although every loss of the epoch (each measured before its update) was
    finite: the last update diverged, which no loss shows. ``lr``: the learning
    rate of that update."""
    n = len(losses)
    where = (f"the parameters became NaN or inf in the last update of epoch {epoch} (step {n} of {n}; "
             f"its losses were finite, the last {losses[-1]:.4g}); ")
    return DivergenceError(where + _divergence_cause(trainer, losses, lr, after_updates=True))


def suggested_lr(lr, optimizer_name):
    """A learning rate worth trying after ``lr`` diverged: ten times smaller, and no
    more than the usual rate of the optimiser (0.1 for SGD and momentum, 1e-3 for Adam)."""
    return min(lr / 10, 1e-3 if optimizer_name == "adam" else 0.1)


def _divergence_cause(trainer, losses, lr, after_updates):
    """The advice of a divergence error. The causes, checked in this order:

    * weight decay: plain and momentum SGD multiply each weight by (1 - lr * decay)
      every step, which overshoots zero and grows once lr * decay >= 1; the decay
      is blamed when it is the outlier (>= 1; usual values are 1e-5 to 1e-2),
      else the learning rate is;
    * the initial weights or the inputs: the loss before the first update is far
      above ln(classes), what a fresh model with sane scales starts at (or not
      finite);
    * otherwise the learning rate (or its schedule): the loss was sane at the
      start, so the updates are what blew up; for a loss divergence
      (``after_updates`` False) a row with extreme values met late is as likely.
    """
    import math

    history = trainer.history.get("iter_loss") or []
    first = history[0] if history else losses[0]
    decay = getattr(trainer.optimizer, "weight_decay", 0.0)
    model = trainer.model
    if trainer.optimizer_name in ("sgd", "momentum", "nesterov") and decay >= 1 and max(lr, trainer.lr) * decay >= 1:
        peak = max(lr, trainer.lr)
        return (f"the weight decay is too strong: with learning rate {peak:g} a decay of {decay:g} pushes every "
                f"weight past zero each step; lower the weight decay (--weight-decay) well below {1 / peak:g}")
    fresh = None if model.value_targets else math.log(model.n_classes)  # a regression loss has no such scale
    if not math.isfinite(first) or (fresh is not None and first > 100 * fresh):
        scale = (f"the initial weights (init {model.init}, std {model.init_std:g}) or " if model.init == "normal" else "")
        near = "" if fresh is None else f" (a fresh model starts near {fresh:.2g})"
        return (f"the loss before the first update was already {first:.3g}{near}: {scale}the inputs are too large; "
                + ("use --init he or xavier, or a smaller --init-std, and " if model.init == "normal" else "")
                + "scale the inputs to about [0, 1]")
    peak = trainer.lr
    at = "" if lr == peak else f" at this step, peak {peak:g}"
    advice = f"lower the learning rate (now {lr:g}{at}; try --lr {suggested_lr(peak, trainer.optimizer_name):g})"
    if not after_updates:
        return advice + " or check the data for extreme values"
    return (f"the learning rate (or its schedule) is too large: the loss before the first update was a sane "
            f"{first:.3g}, so the updates blew up; {advice}")
