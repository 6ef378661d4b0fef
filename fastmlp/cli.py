"""The ``fastmlp`` command: ``fastmlp COMMAND [flags]``, and ``python -m fastmlp``.

``fastmlp train`` is ``python -m fastmlp.train`` (same flags, same exit codes).
Each command parses its own flags, so ``fastmlp train --help`` is the trainer's
help; only the command name is parsed here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# command: (module whose main(argv) runs it, one line for --help)
COMMANDS = {
    "train": ("fastmlp.train", "train one model (the same as python -m fastmlp.train)"),
    "sweep": ("fastmlp.sweep", "train many configurations on Dask and keep the best (pip install 'fastmlp[sweep]')"),
}


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastmlp",
        description="Multilayer perceptrons for MNIST-style data on the CPU or a CUDA GPU.",
        epilog="Run 'fastmlp COMMAND --help' for the flags of a command.",
    )
    p.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, text) in COMMANDS.items():
        # add_help=False: "fastmlp train --help" goes on to the command's own parser
        sub.add_parser(name, help=text, add_help=False)
    return p


def main(argv=None):
    """Run ``fastmlp ARGS``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv[:1])
    rest += argv[1:]
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(rest, prog=f"fastmlp {args.command}")
