"""``python -m fastmlp.train``: train an MLP on MNIST-style data and write the results.

Exit status: 0 on success (also when ``--resume`` finds the run finished),
2 for usage errors (argparse's convention), 1 for any other error (one line on
stderr; ``--debug`` shows the traceback), 130 / 143 / 129 when SIGINT (Ctrl-C)
/ SIGTERM / SIGHUP stopped the run (after one line naming the checkpoint on disk).

This module reads the flags into a :class:`~fastmlp.config.TrainConfig` and calls
:func:`fastmlp.run` (or :func:`fastmlp.resume`); it adds the exit codes, the
one-line errors and the console output.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import config, presets
from .errors import ConfigError, FastMLPError, one_line
from .interrupts import Interrupted, signals_raise

DEFAULTS = presets.DEFAULT


def build_parser(prog="python -m fastmlp.train"):
    """The command's parser: a flag for every field of :class:`~fastmlp.config.TrainConfig`
    (its help and checks come from there), and --resume, --allow-other-data, --debug."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a multilayer perceptron on MNIST-style data on the CPU or a CUDA GPU.",
        formatter_class=argparse.HelpFormatter,  # each help string states its own default, once
    )
    groups = {}
    for name, f in config.FIELDS.items():
        group = f.metadata["group"]
        if group not in groups:
            groups[group] = p.add_argument_group(group)
        if name == "plots":
            groups[group].add_argument(
                "--resume", default=None, metavar="DIR",
                help="continue the run whose output folder is DIR from its last complete checkpoint, on the data "
                     "it recorded (or --data-dir) and with its own settings; with --epochs N, continue it to N "
                     "epochs in all (default: start a new run)")
            groups[group].add_argument("--allow-other-data", action="store_true",
                                       help="with --resume: continue even if the data's fingerprint differs from the run's")
        config.add_arguments(groups[group], [name])
    groups["output"].add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def parse_args(parser, argv=None):
    """``parser.parse_args`` with the values of the chosen ``--preset`` as the defaults."""
    chosen, _ = parser.parse_known_args(argv)
    parser.set_defaults(**presets.preset(chosen.preset))
    return parser.parse_args(argv)


def given_flags(argv=None):
    """{dest: value} of the options given on the command line (defaults left out)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def config_from_args(args):
    """The :class:`~fastmlp.config.TrainConfig` that parsed command-line ``args`` stand for."""
    return config.TrainConfig(**{name: getattr(args, name) for name in config.FIELDS})


def run(args, log=print, given=None, warn=None):
    """Train as ``args`` say (or continue the run in ``args.resume``) with
    :func:`fastmlp.run` / :func:`fastmlp.resume`; returns their
    :class:`~fastmlp.training.TrainResult`. ``given`` holds the flags given on the
    command line (see :func:`given_flags`): with ``--resume``, settings that differ
    from the run's are an error, and ``--epochs`` continues the run to that many epochs."""
    from . import training

    given = given or {}
    warn = warn or (lambda text: print(text, file=sys.stderr))
    if not args.resume:
        return training.run(config_from_args(args), log=log, warn=warn)
    for flag in ("out", "overwrite"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag} cannot be used with --resume: the run continues in its own folder {args.resume}")
    expect = {k: v for k, v in given.items() if k in config.SETTINGS}
    return training.resume(args.resume, epochs=given.get("epochs"), data_dir=args.data_dir, device=args.device,
                           allow_other_data=args.allow_other_data, expect=expect, log=log, warn=warn,
                           cuda_graph=args.cuda_graph, plots=args.plots, quiet=args.quiet, verbose=args.verbose,
                           download=args.download)


class _Stdout:
    """``log`` for the CLI: one line to stdout. If stdout stops taking lines (a closed
    pipe such as ``| head -1``, a full device), the run goes on without them, says so
    once on stderr, and stdout is pointed at /dev/null so that Python's final flush
    cannot fail either."""

    def __init__(self):
        self.ok = True

    def __call__(self, text):
        if not self.ok:
            return
        from .console import write_line  # never fails on the text (a path that is not UTF-8)

        try:
            write_line(text)
        except OSError as exc:
            self.ok = False
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            _stderr(f"fastmlp: cannot write to stdout ({exc.strerror or exc}); the run goes on without its progress lines")


def _stderr(text):
    from .console import write_line  # never fails on the text (a path that is not UTF-8)

    try:
        write_line(text, sys.stderr)
    except (OSError, ValueError):
        pass


def main(argv=None, prog="python -m fastmlp.train"):
    """Run the trainer with command-line ``argv``; returns the exit status. ``prog``:
    the command's name in usage and error lines (``fastmlp train`` from the CLI)."""
    parser = build_parser(prog)
    args = parse_args(parser, argv)
    try:
        with signals_raise():
            run(args, log=_Stdout(), given=given_flags(argv), warn=_stderr)
    except Interrupted as stop:
        return stop.exit_code
    except FastMLPError as exc:
        if args.debug:
            raise
        _stderr(f"fastmlp: error: {exc}")
        return 1
    except MemoryError as exc:
        if args.debug:
            raise
        _stderr(f"fastmlp: error: ran out of memory ({one_line(exc) or 'no details'}); try smaller --sizes or --batch-size")
        return 1
    except Exception as exc:
        if args.debug:
            raise
        _stderr(f"fastmlp: error: unexpected {type(exc).__name__} ({one_line(exc)}); this is a bug in fastmlp: "
                "run again with --debug and report the traceback")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
