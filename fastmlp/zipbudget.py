"""How much a zip archive (a model or checkpoint ``.npz``) may make fastmlp hold.

A crafted archive can claim anything: a central directory of millions of
entries, or a deflated member that inflates a thousand times (a "deflate
bomb": 0.3 MB on disk, 300 MB in memory). Everything here is decided from the
archive's directory, before any member is decompressed:

* :func:`check_directory`: the central directory is at most
  :data:`MAX_DIRECTORY_BYTES` with at most :data:`MAX_MEMBERS` entries (read
  from the end record, before ``zipfile`` parses the directory);
* :meth:`Budget.check_member`: a member's sizes are consistent with the file
  (its compressed bytes lie inside it; deflate inflates at most
  :data:`DEFLATE_MAX_RATIO` times; a stored member is as long as it says);
* :meth:`Budget.reserve`: all the members read from one archive inflate to at
  most ``max(FREE_BYTES, INFLATE_RATIO * size on disk)`` bytes. fastmlp writes
  its members uncompressed, so its own files use about one times their size;
  only highly compressed members beyond :data:`FREE_BYTES` are refused.
"""

from __future__ import annotations

import struct
import zipfile

from .errors import DataError

__all__ = ["Budget", "check_directory", "MAX_MEMBERS", "MAX_DIRECTORY_BYTES", "INFLATE_RATIO", "FREE_BYTES"]

MAX_MEMBERS = 4096
MAX_DIRECTORY_BYTES = 4 << 20
INFLATE_RATIO = 16
FREE_BYTES = 32 << 20
DEFLATE_MAX_RATIO = 1032  # the most deflate can expand data, with slack below

_END = b"PK\x05\x06"
_END64_LOCATOR = b"PK\x06\x07"
_END64 = b"PK\x06\x06"


def _directory_extent(f, size):
    """(entries, directory bytes) from the archive's end record, or None if there is none
    (then ``zipfile`` says what is wrong)."""
    tail_len = min(size, 22 + 0xFFFF + 20)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(_END)
    if at < 0 or at + 22 > len(tail):
        return None
    entries, cd_bytes = struct.unpack_from("<HI", tail, at + 10)
    if (entries == 0xFFFF or cd_bytes == 0xFFFFFFFF) and at >= 20 and tail[at - 20: at - 16] == _END64_LOCATOR:
        (end64_at,) = struct.unpack_from("<Q", tail, at - 12)
        if end64_at + 56 <= size:
            f.seek(end64_at)
            end64 = f.read(56)
            if end64[:4] == _END64:
                entries, cd_bytes = struct.unpack_from("<QQ", end64, 32)
    return entries, cd_bytes


def check_directory(f, path, what):
    """Refuse an archive (open binary file ``f``) whose central directory is beyond the limits."""
    size = f.seek(0, 2)
    extent = _directory_extent(f, size)
    f.seek(0)
    if extent is None:
        return
    entries, cd_bytes = extent
    if entries > MAX_MEMBERS or cd_bytes > MAX_DIRECTORY_BYTES:
        raise DataError(
            f"{path}: its zip directory lists {entries:,} members in {cd_bytes:,} bytes, more than the "
            f"{MAX_MEMBERS} members in {MAX_DIRECTORY_BYTES >> 20} MiB fastmlp reads; this is not a {what} fastmlp wrote"
        )


class Budget:
    """The bytes the members of one archive of ``disk_bytes`` may inflate to, in all."""

    def __init__(self, path, what, disk_bytes):
        self.path, self.what, self.disk_bytes = path, what, disk_bytes
        self.limit = max(FREE_BYTES, INFLATE_RATIO * disk_bytes)
        self.used = 0

    def _fail(self, name, problem):
        return DataError(f"{self.path}: member {name!r} has {problem}; this is not a {self.what} fastmlp wrote")

    def check_member(self, name, info: zipfile.ZipInfo):
        """Refuse member ``name`` if its declared sizes cannot be true of this file."""
        if info.header_offset + info.compress_size > self.disk_bytes:
            raise self._fail(name, f"{info.compress_size:,} compressed bytes, more than the "
                                   f"{self.disk_bytes:,}-byte file holds")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise self._fail(name, f"{info.file_size:,} bytes stored in {info.compress_size:,}")
        if info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 64:
            raise self._fail(name, f"{info.file_size:,} bytes deflated into {info.compress_size:,}, "
                                   f"more than deflate can expand ({DEFLATE_MAX_RATIO} times)")

    def fits(self, nbytes) -> bool:
        return self.used + nbytes <= self.limit

    def refusal(self, nbytes, what_for):
        """The DataError for ``what_for`` needing ``nbytes`` more than the budget allows."""
        return DataError(
            f"{self.path}: {what_for} would take {nbytes:,} bytes of memory, but the file is {self.disk_bytes:,} bytes "
            f"on disk (a compression bomb?); fastmlp inflates at most {INFLATE_RATIO} times a file's size "
            f"(or {FREE_BYTES >> 20} MiB) and writes its own files uncompressed, so this is not a {self.what} it wrote"
        )

    def reserve(self, nbytes, what_for):
        """Count ``nbytes`` against the budget, or raise the refusal for ``what_for``."""
        if not self.fits(nbytes):
            raise self.refusal(self.used + nbytes, what_for)
        self.used += nbytes
