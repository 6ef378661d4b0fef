"""The output folder of a training run: one run at a time in it, and nothing left of a failed start.

:meth:`RunFolder.new` makes (or takes) the folder for a new run and
:meth:`RunFolder.resume` takes an earlier run's folder. Either way, before any
data is loaded or any training starts, the folder is

* locked with ``flock``, so a second live run in it stops at once;
* checked to be writable, with a real temp file, so a read-only folder is found
  before training and not after it;
* cleared of the temp files that killed writes left behind.

A new run refuses a folder that holds another run's results unless told to
replace them. :meth:`RunFolder.close` gives the lock back and removes the
folders the run created if it wrote nothing into them.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from .errors import ConfigError, FastMLPError
from .files import FolderBusy, lock_folder, remove_stale_temps

CHECKPOINT = "checkpoint.npz"
# Every file a run writes into its folder.
OUTPUTS = (CHECKPOINT, "model.npz", "metrics.json", "history.png", "confusion.png", "samples.png")
# The files that mean "this folder holds a run".
RUN_FILES = (CHECKPOINT, "model.npz", "metrics.json")


class RunFolder:
    def __init__(self, path: Path, created: list[Path], warn):
        self.path = path
        self.created = created  # folders this run made, outermost first
        self._lock = None
        try:
            self._lock = lock_folder(path)
        except OSError as exc:
            self.close()
            raise FastMLPError(f"cannot open output folder {path}: {exc.strerror or exc}; pass another --out") from None
        except FolderBusy:
            self.close()
            raise ConfigError(
                f"{path} is in use by another fastmlp run; wait for it to finish or choose another --out"
            ) from None
        if self._lock is None:
            warn(f"fastmlp: cannot lock {path} (its file system has no flock); make sure no other run uses it")

    @classmethod
    def new(cls, out, dataset: str, overwrite=False, warn=print):
        """The folder for a new run: ``out``, or a fresh ``runs/<dataset>-<time>[-N]``."""
        if out is None:
            folder, created = _unique(Path("runs") / f"{dataset}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
        else:
            folder, created = _make(Path(out))
        run = cls(folder, created, warn)
        try:
            others = [name for name in RUN_FILES if (folder / name).exists()]
            if others and not overwrite:
                raise ConfigError(
                    f"{folder} holds another run ({', '.join(others)}); continue it with --resume {folder}, "
                    "choose another --out, or pass --overwrite to replace it"
                )
            run._prepare()
            for name in OUTPUTS if overwrite else ():  # nothing of the old run may mix with the new one
                if (folder / name).exists():
                    os.unlink(folder / name)
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def resume(cls, path, warn=print):
        """An earlier run's folder, to continue the run in it."""
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"--resume {folder}: no such folder; --resume takes the output folder of an earlier run")
        run = cls(folder, [], warn)
        try:
            run._prepare()
        except BaseException:
            run.close()
            raise
        return run

    def _prepare(self):
        probe = self.path / f".fastmlp-write-test-{os.getpid()}.tmp"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            raise FastMLPError(
                f"cannot write into output folder {self.path}: {exc.strerror or exc}; pass a writable --out"
            ) from None
        remove_stale_temps(self.path, OUTPUTS)

    def close(self):
        """Give the lock back, and remove the folders this run created if they are
        still empty: a run that failed before writing anything leaves nothing behind."""
        for folder in reversed(self.created):
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _make(folder: Path):
    """Create ``folder`` and its missing parents; (folder, the ones created)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output path {folder} exists and is not a folder; pass another --out")
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FastMLPError(f"cannot create output folder {folder}: {exc.strerror or exc}; pass a writable --out") from None
    return folder, missing


def _unique(base: Path):
    """Create ``base``, or ``base-2``, ``base-3``, ... if it exists: mkdir is atomic,
    so two runs started in the same second get two folders."""
    _, created = _make(base.parent)
    for n in range(1, 1000):
        folder = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise FastMLPError(f"cannot create output folder {folder}: {exc.strerror or exc}; pass a writable --out") from None
        return folder, [*created, folder]
    raise FastMLPError(f"{base} and 998 numbered folders beside it exist; pass --out")
