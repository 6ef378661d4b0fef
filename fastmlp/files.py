"""Careful file operations shared by every reader and writer in fastmlp.

* :func:`atomic_write`: temp file next to the target, fsync, rename, so a
  reader (or a kill) never sees a half-written file. The temp file is created
  with mode 0666, so the umask decides the final permissions, as for ``open()``.
* :func:`open_regular`: open a file for reading only if it is a regular file,
  without blocking on a FIFO or a device.
* :func:`remove_stale_temps`: delete the temp files that killed writes left.
* :func:`lock_folder`: an exclusive ``flock`` on a folder, so two processes
  never write into the same one at once.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
from pathlib import Path

from .errors import DataError, FastMLPError


def _temp_name(path):
    return path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync, then rename it
    over ``path``. On any error the temp file is removed and ``path`` is untouched;
    an OSError becomes a one-line FastMLPError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise FastMLPError(f"cannot write {path}: {exc.strerror or exc}; choose a writable output folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise FastMLPError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(p):
    try:
        os.unlink(p)
    except OSError:
        pass


def remove_stale_temps(folder, names):
    """Delete the temp files that an interrupted write of any of ``names`` left in
    ``folder``: ``.NAME.*.tmp`` (and ``.NAME.*.tmp.png``, ``NAME.*.tmp``, ``NAME.*.part``
    from older versions). Call it only while holding the folder's lock, so no live
    write loses its temp file. Returns the names removed."""
    alternatives = "|".join(re.escape(n) for n in names)
    pattern = re.compile(rf"(\.({alternatives})\..+\.tmp(\.png)?|({alternatives})\..+\.(tmp|part))")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            _unlink(entry.path)
            removed.append(entry.name)
    return sorted(removed)


_KINDS = {
    stat.S_ISDIR: "a folder",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def open_regular(path, what="file"):
    """Open ``path`` for binary reading if it is a regular file; anything else
    (missing, a folder, a FIFO, a device, unreadable) is a one-line DataError.

    The open never blocks: O_NONBLOCK keeps a FIFO without a writer from hanging,
    and the file type is checked on the open descriptor before anything is read."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the {what} readable") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open {what} ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")
        raise DataError(f"{path}: is {kind}, not a regular file; point fastmlp at the {what} itself")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def sha256_file(path) -> str:
    """SHA-256 (hex) of a regular file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class FolderBusy(FastMLPError):
    """Another process holds the folder's lock."""


def lock_folder(folder, wait=False):
    """An exclusive advisory lock (``flock``) on ``folder`` itself, held until the
    returned descriptor is closed (or the process ends, however it ends).

    wait=False: raise :class:`FolderBusy` if another process holds it. Returns None
    where the file system has no flock (then nothing is locked)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise FolderBusy(f"{folder} is in use by another fastmlp process") from None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL):
            return None
        raise
    return fd
