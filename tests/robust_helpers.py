"""Helpers shared by the tests/test_robust_*.py files: running the CLI in-process or
in a child process, and checking the one-line errors it promises."""

import io
import os
import signal
import subprocess
import sys

from fastmlp.train import main

# A small, quick run; add "--quiet" where the per-epoch lines are not needed.
TINY = ["--epochs", "2", "--batch-size", "32", "--sizes", "784,8,10", "--no-plots"]


def cli(*args, env=None, cwd=None, timeout=300, **kwargs):
    """Run ``python -m fastmlp.train`` in a child process: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "fastmlp.train", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout, **kwargs)
    return proc.returncode, proc.stdout, proc.stderr


def run_main(capsys, *args):
    """main() in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()  # what came before is not this run's
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *needles):
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error:"), err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


class SignalAt(io.StringIO):
    """A stdout that sends ``signum`` to this process when a line containing ``text``
    is written: the per-epoch line comes after the epoch counter moved and before
    the checkpoint is written, the moment the report of the checkpoint got wrong."""

    def __init__(self, text, signum=signal.SIGINT):
        super().__init__()
        self.text, self.signum, self.sent = text, signum, False

    def write(self, s):
        if self.text in s and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)
        return super().write(s)


def interrupted_run(*args, at="epoch   2", signum=signal.SIGINT):
    """main(args) stopped by ``signum`` when the line ``at`` is printed (so not with
    --quiet): (exit code, stdout text)."""
    fake = SignalAt(at, signum)
    old, sys.stdout = sys.stdout, fake
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = main([str(a) for a in args])
    finally:
        sys.stdout = old
        for s, handler in handlers.items():  # main leaves them ignored after a stop, as the process would exit
            signal.signal(s, handler)
    return code, fake.getvalue()
