"""Downloading files into a folder, checked by SHA-256, from the first mirror that serves them."""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from .console import write_line
from .errors import DataError, one_line
from .files import FolderBusy, atomic_write, lock_folder, remove_stale_temps

_GZIP_MAGIC = b"\x1f\x8b"

# Far above the largest file (~26 MB); stops a misbehaving server early.
_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024


def fetch_files(name: str, dest_dir, mirrors: Sequence[str], checksums: Mapping[str, str],
                timeout: float = 30.0, deadline: float = 600.0) -> pathlib.Path:
    """Download each file of ``checksums`` (file name -> SHA-256 hex) missing from
    ``dest_dir`` from the first of ``mirrors`` (base URLs) that serves it intact.

    Files already in ``dest_dir`` are kept as they are. Each missing file is
    streamed to a hidden temp file in ``dest_dir``, hashed on the way, and
    moved to its final name only if the hash matches; otherwise the next
    mirror is tried. Nothing partial is ever left behind. Returns
    ``dest_dir`` as a Path; raises ``DataError`` if every mirror fails for a
    file. ``name`` only labels the progress lines.

    ``timeout`` bounds each network operation (connect, one read) and
    ``deadline`` a whole file: a server that trickles bytes fails that mirror
    after ``deadline`` seconds (checked between reads, so at most ``timeout``
    later). While downloading, ``dest_dir`` is locked: a second process
    downloading into it waits, then finds the files there, and the temp files
    of killed downloads are removed.
    """
    dest = pathlib.Path(dest_dir).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create download folder {dest} ({one_line(e)}); set FASTMLP_CACHE_DIR to a "
            "writable folder, or pass --data-dir / set FASTMLP_DATA_DIR to a folder with the files"
        ) from None
    lock = _lock(dest)
    try:
        remove_stale_temps(dest, list(checksums))
        _fetch_missing(name, dest, mirrors, checksums, timeout, deadline)
    finally:
        if lock is not None:
            os.close(lock)
    return dest


def _lock(dest: pathlib.Path):
    try:
        return lock_folder(dest)
    except FolderBusy:
        write_line(f"fastmlp: waiting for another fastmlp download into {dest}", sys.stderr)
        return lock_folder(dest, wait=True)


def _fetch_missing(name, dest, mirrors, checksums, timeout, deadline):
    for filename, sha256 in checksums.items():
        final = dest / filename
        if final.exists():
            continue
        write_line(f"fastmlp: downloading {name} {filename} to {dest}", sys.stderr)
        reasons = []
        for base in mirrors:
            url = (base if base.endswith("/") else base + "/") + filename
            reason = _fetch(url, sha256.lower(), final, timeout, deadline)
            if reason is None:
                break
            reasons.append(f"{url}: {reason}")
        else:
            raise DataError(
                f"could not download {filename} (expected sha256 {sha256}): "
                + ("; ".join(reasons) or "no mirrors given")
                + ". On a machine without internet, copy the files into a folder and pass "
                "--data-dir or set FASTMLP_DATA_DIR"
            )


class _MirrorFailed(Exception):
    """This mirror did not give the file; the message says why."""


def _fetch(url: str, sha256: str, final: pathlib.Path, timeout: float, deadline: float) -> str | None:
    """Download ``url`` to ``final`` (atomically) if its SHA-256 matches.

    Returns None on success, else a short reason why this mirror failed.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            atomic_write(final, lambda f: _stream(resp, f, sha256, timeout, time.monotonic() + deadline, deadline))
        return None
    except _MirrorFailed as e:
        return str(e)
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return one_line(e.reason)
    except (OSError, ValueError, http.client.HTTPException) as e:
        return _reason(e, timeout)


def _reason(e: Exception, timeout: float) -> str:
    if isinstance(e, TimeoutError):
        return f"timed out after {timeout:g} s"
    return f"{type(e).__name__}: {one_line(e)}"


def _stream(resp, f, sha256: str, timeout: float, end: float, deadline: float) -> None:
    """Copy the body of ``resp`` into ``f`` by ``end`` (a ``time.monotonic()``),
    checking it on the way; a _MirrorFailed says why the body is not the file
    (network errors included, so that only a failure to write ``f`` is an OSError)."""

    def read(n):
        try:
            # read1: whatever one read brings, so that a trickle cannot hold one call forever
            chunk = resp.read1(n)
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise _MirrorFailed(_reason(e, timeout)) from None
        if time.monotonic() > end:
            raise _MirrorFailed(f"took longer than {deadline:g} s for one file (the server is too slow)")
        return chunk

    digest = hashlib.sha256()
    head = read(2)
    if len(head) == 1:
        head += read(1)
    if head != _GZIP_MAGIC:
        if not head:
            raise _MirrorFailed("empty response")
        if head.lstrip()[:1] == b"<":
            raise _MirrorFailed("got an HTML page, not a gzip file")
        raise _MirrorFailed(f"not a gzip file (starts with {head.hex()})")
    digest.update(head)
    f.write(head)
    total = len(head)
    while chunk := read(1 << 20):
        total += len(chunk)
        if total > _MAX_DOWNLOAD_BYTES:
            raise _MirrorFailed(f"response larger than {_MAX_DOWNLOAD_BYTES} bytes")
        digest.update(chunk)
        f.write(chunk)
    got = digest.hexdigest()
    if got != sha256:
        raise _MirrorFailed(f"sha256 mismatch (got {got[:16]}...)")
