"""Ctrl-C, SIGTERM and SIGHUP as one exception, and moments that no signal may split.

While :func:`signals_raise` is active, the first of these signals raises
:class:`Interrupted` in the main thread, and every later one is ignored, so the
clean-up and the one-line report that follow cannot be interrupted in turn (a
second Ctrl-C never prints a traceback). :func:`deferred` holds the signals
back while a checkpoint is written and recorded, so "the checkpoint on disk"
and "the checkpoint we report" are always the same one.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A signal asked the run to stop. Like KeyboardInterrupt it is not an Exception,
    so ``except Exception`` clean-up code does not swallow it."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # the shell's convention: 130, 143, 129


# While a deferred() block runs, a signal is only noted here and raised at its end.
# (Blocking signals with pthread_sigmask would not do: the BLAS threads do not
# block them, and Python runs its handlers in the main thread whichever thread
# caught the signal.)
_deferring = 0
_pending = None
_stopped = False


def _stop(signum):
    global _stopped
    _stopped = True
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def _handle(signum, frame):
    global _pending
    if _deferring:
        _pending = _pending or signum
    else:
        _stop(signum)


@contextmanager
def signals_raise():
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (once) inside the block.
    After an interruption they stay ignored, since the process is on its way out
    (a later Ctrl-C would otherwise print a traceback); without one, the old
    handlers come back. Outside the main thread (where Python cannot set
    handlers) nothing changes."""
    global _pending, _stopped
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending, _stopped = None, False
    old = {s: signal.signal(s, _handle) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_IGN if _stopped else handler)


@contextmanager
def deferred():
    """Inside the block a signal is held back; it raises right after the block."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            _stop(_pending)
