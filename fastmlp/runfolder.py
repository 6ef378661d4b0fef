"""The output folder of a training run: one run at a time in it, nothing left of a
failed start, and nothing of an earlier run lost to ``--overwrite``.

:meth:`RunFolder.new` makes (or takes) the folder for a new run and
:meth:`RunFolder.resume` takes an earlier run's folder. Either way, before any
data is loaded or any training starts, the folder is

* locked with ``flock`` on the folder itself, held until :meth:`RunFolder.close`
  (or the process ends, however it ends), so a second live run in it stops at
  once; the lock is checked to be on the folder that is at the path *now*, so a
  run never holds a folder that was removed under it;
* checked to be writable, with a real temp file, so a read-only folder is found
  before training and not after it;
* settled: an ``--overwrite`` that a crash interrupted is finished or undone
  (see below), and the temp files that killed writes left behind are removed.

Two runs can never share a folder or remove one another's: a run removes only
the folders it created itself (``mkdir`` succeeded) *and* holds the lock of, so a
run that loses the race for a folder leaves it to the winner and says so in one
line.

A new run refuses a folder that holds another run's results unless told to
replace them. With ``--overwrite`` the earlier run's outputs are not deleted but
set aside in the hidden folder ``.fastmlp-overwritten`` inside the run folder;
:meth:`RunFolder.commit` deletes them once the new run has written its first
checkpoint (or, without checkpoints, its model), and :meth:`RunFolder.restore`
puts them back if the new run stops before that: a failure, an interrupt, or a
crash (then the next run or ``--resume`` in the folder puts them back). While
they are moved, the hidden folder is named ``.fastmlp-overwritten.restore``
(found after a crash: its files go back) or ``.fastmlp-overwritten.delete``
(found after a crash: it is deleted), so each step is one atomic rename and a
crash between any two steps leaves either the earlier run or the new run's
first checkpoint, never a mix and never neither.

:meth:`RunFolder.close` puts back what was set aside if the run wrote nothing,
removes the folders the run created if it wrote nothing into them, and gives
the lock back.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path

from .errors import ConfigError, FastMLPError
from .files import FolderBusy, lock_folder, remove_stale_temps

CHECKPOINT = "checkpoint.npz"
# Every file a run writes into its folder.
OUTPUTS = (CHECKPOINT, "model.npz", "metrics.json", "history.png", "confusion.png", "samples.png")
# The files that mean "this folder holds a run".
RUN_FILES = (CHECKPOINT, "model.npz", "metrics.json")
# Where --overwrite keeps the earlier run until the new one has its first checkpoint.
ASIDE = ".fastmlp-overwritten"
_RESTORE = ASIDE + ".restore"  # its files go back (being set aside, or being put back)
_DELETE = ASIDE + ".delete"  # the new run has its first checkpoint: it goes
# How often to make the folder again when it was removed between our mkdir and our lock.
_TRIES = 20

# The file-system steps of setting aside, putting back and deleting, one call each
# (the tests crash between any two of them).
_mkdir = os.mkdir
_rename = os.rename
_unlink = os.unlink
_rmdir = os.rmdir


class _Gone(Exception):
    """The folder we locked is no longer the one at its path (it was removed, empty,
    by the run that made it, before we had the lock): make it again."""


class RunFolder:
    def __init__(self, path: Path, created: list[Path], warn, resuming=False):
        """Lock ``path``; ``created``: the folders this run made (``mkdir`` succeeded),
        outermost first. Raises :class:`_Gone` if the folder was replaced."""
        self.path = path
        self.created = created
        self.warn = warn
        self._lock = None
        self._owner = False  # may remove what it created: it holds the lock (or there is no flock)
        try:
            self._lock = lock_folder(path)
        except FileNotFoundError:
            raise _Gone from None
        except OSError as exc:
            raise FastMLPError(f"cannot open output folder {path}: {exc.strerror or exc}; pass another --out") from None
        except FolderBusy:
            how = "wait for it to finish before resuming it" if resuming else "wait for it to finish or choose another --out"
            raise ConfigError(f"{path} is in use by another fastmlp run; {how}") from None
        if self._lock is None:
            warn(f"fastmlp: cannot lock {path} (its file system has no flock); make sure no other run uses it")
        elif not _same(self._lock, path):
            os.close(self._lock)
            self._lock = None
            raise _Gone
        self._owner = True

    @classmethod
    def new(cls, out, dataset: str, overwrite=False, warn=print):
        """The folder for a new run: ``out``, or a fresh ``runs/<dataset>-<time>[-N]``.
        With ``overwrite``, the outputs of a run already there are set aside (see
        :meth:`commit` and :meth:`restore`)."""
        for _ in range(_TRIES):
            if out is None:
                folder, created = _unique(Path("runs") / f"{dataset}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
            else:
                folder, created = _make(Path(out))
            try:
                run = cls(folder, created, warn)
                break
            except _Gone:
                continue
        else:
            raise FastMLPError(f"output folder {folder} keeps being removed by another process; pass another --out")
        try:
            run._prepare()
            others = [name for name in RUN_FILES if (folder / name).exists()]
            if others and not overwrite:
                raise ConfigError(
                    f"{folder} holds another run ({', '.join(others)}); continue it with --resume {folder}, "
                    "choose another --out, or pass --overwrite to replace it"
                )
            if overwrite:  # nothing of the old run may mix with the new one, and nothing of it is lost
                run._set_aside()
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def resume(cls, path, warn=print):
        """An earlier run's folder, to continue the run in it (with the same lock as a new run)."""
        folder = Path(path)
        for _ in range(_TRIES):
            if not folder.is_dir():
                raise ConfigError(f"--resume {folder}: no such folder; --resume takes the output folder of an earlier run")
            try:
                run = cls(folder, [], warn, resuming=True)
                break
            except _Gone:
                continue
        else:
            raise FastMLPError(f"--resume {folder}: the folder keeps being replaced by another process")
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
        try:
            self._settle()
        except OSError as exc:
            raise FastMLPError(
                f"cannot finish the --overwrite a crash interrupted in {self.path} ({exc.strerror or exc}); "
                f"the earlier run's files are in {self.path / ASIDE}*"
            ) from None
        remove_stale_temps(self.path, OUTPUTS)

    # --overwrite: set aside, commit, restore ---------------------------------

    def _new_outputs(self):
        return [name for name in OUTPUTS if os.path.lexists(self.path / name)]

    def _set_aside(self):
        """Move the earlier run's outputs into the hidden folder: first into
        ``.restore`` (a crash now puts them back), then renamed to ``ASIDE``."""
        names = self._new_outputs()
        if not names:
            return
        moving = self.path / _RESTORE
        try:
            _mkdir(moving)
            for name in names:
                _rename(self.path / name, moving / name)
            _rename(moving, self.path / ASIDE)
        except OSError as exc:
            raise FastMLPError(
                f"cannot set the earlier run in {self.path} aside for --overwrite: {exc.strerror or exc}; "
                "nothing of it was deleted"
            ) from None

    def commit(self):
        """The new run has written its first checkpoint (or, without checkpoints, its
        model): delete the earlier run that ``--overwrite`` set aside. A no-op if
        nothing is aside. Never raises for the file system: a failed delete is said
        in one line, and finished by the next run in the folder."""
        aside, doomed = self.path / ASIDE, self.path / _DELETE
        try:
            if os.path.lexists(aside):
                if os.path.lexists(doomed):
                    _delete_tree(doomed)
                _rename(aside, doomed)
            if os.path.lexists(doomed):
                _delete_tree(doomed)
        except OSError as exc:
            self.warn(f"fastmlp: cannot delete the replaced run's files in {self.path} ({exc.strerror or exc}); "
                      f"the next run in the folder deletes them, or delete {doomed} yourself")

    def restore(self):
        """Put back the earlier run that ``--overwrite`` set aside, if this run has
        written none of its outputs yet (a failure or an interrupt before its first
        checkpoint): the folder is as it was. Returns whether anything went back."""
        aside = self.path / ASIDE
        if not os.path.lexists(aside) or self._new_outputs():
            return False
        _rename(aside, self.path / _RESTORE)
        self._put_back()
        return True

    def _put_back(self):
        moving = self.path / _RESTORE
        kept = []
        for name in sorted(os.listdir(moving)):
            if os.path.lexists(self.path / name):  # never happens; never replace a file either
                kept.append(name)
            else:
                _rename(moving / name, self.path / name)
        if kept:
            self.warn(f"fastmlp: {moving} keeps the earlier run's {', '.join(kept)}, as {self.path} has files of "
                      "those names; look at both before deleting either")
        else:
            _rmdir(moving)

    def _settle(self):
        """Finish what a crash interrupted: a delete goes on, a move goes back, and
        an earlier run still aside goes back unless the new run had written its
        first checkpoint (then it is deleted)."""
        if os.path.lexists(self.path / _DELETE):
            _delete_tree(self.path / _DELETE)
        if os.path.isdir(self.path / _RESTORE):
            self._put_back()
        if os.path.lexists(self.path / ASIDE) and not self.restore():
            self.commit()

    def close(self):
        """Put back the earlier run if this one wrote nothing (see :meth:`restore`),
        remove the folders this run created if they are still empty, and give the
        lock back: a run that failed before writing anything leaves the folder as
        it found it. Folders are removed only by the run that made them and holds
        their lock, so never one another run uses."""
        try:
            if self._owner:
                try:
                    self._settle()
                except OSError as exc:
                    self.warn(f"fastmlp: cannot put back the earlier run set aside in {self.path / ASIDE} "
                              f"({exc.strerror or exc}); the next run in {self.path} puts it back")
                for folder in reversed(self.created):
                    if not _remove_if_empty(folder, self._lock if folder == self.path else None):
                        break
        finally:
            self._owner = False
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None


def _same(fd, path):
    """Whether the open folder ``fd`` is the one at ``path`` now."""
    try:
        here = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (here.st_dev, here.st_ino)


def _remove_if_empty(folder, lock):
    """rmdir ``folder`` while holding its lock (``lock``, or taken here without
    waiting: a folder another run holds stays); whether it is gone."""
    own = None
    if lock is None:
        try:
            own = lock = lock_folder(folder)
        except (FolderBusy, OSError):
            return False
    try:
        if lock is not None and not _same(lock, folder):
            return False
        folder.rmdir()  # only if empty
        return True
    except OSError:
        return False
    finally:
        if own is not None:
            os.close(own)


def _delete_tree(folder):
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            _unlink(entry.path)
    _rmdir(folder)


def _make(folder: Path):
    """Create ``folder`` and its missing parents; (folder, the ones this call created).

    A folder counts as created only if our own ``mkdir`` made it, so two runs
    racing for one ``--out`` never both think they made it."""
    created = []
    for _ in range(_TRIES):
        missing = [p for p in (folder, *folder.parents) if not os.path.isdir(p)][::-1]
        try:
            for p in missing:
                try:
                    p.mkdir()
                    created.append(p)
                except FileExistsError:
                    if not p.is_dir():
                        raise ConfigError(f"output path {p} exists and is not a folder; pass another --out") from None
        except FileNotFoundError:
            continue  # a parent that another run had made was removed by it, empty: make it again
        except OSError as exc:
            raise FastMLPError(f"cannot create output folder {folder}: {exc.strerror or exc}; pass a writable --out") from None
        return folder, created
    raise FastMLPError(f"cannot create output folder {folder}: its parents keep being removed; pass another --out")


def _unique(base: Path):
    """Create ``base``, or ``base-2``, ``base-3``, ... if it exists: mkdir is atomic,
    so two runs started in the same second get two folders."""
    for _ in range(_TRIES):
        _, created = _make(base.parent)
        for n in range(1, 1000):
            folder = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            except FileNotFoundError:
                break  # the parent was removed under us: make it again
            except OSError as exc:
                raise FastMLPError(f"cannot create output folder {folder}: {exc.strerror or exc}; pass a writable --out") from None
            return folder, [*created, folder]
        else:
            raise FastMLPError(f"{base} and 998 numbered folders beside it exist; pass --out")
    raise FastMLPError(f"cannot create output folder {base}: its parent keeps being removed; pass --out")
