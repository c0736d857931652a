"""Listing a package's tarballs under a work budget: every member counted, every path kept inside the package.

A package is read without extracting it: each tarball (the `.tar.bz2` itself, or the
`info-` and `pkg-` tarballs of a `.conda`) is streamed through conda-package-streaming's
tar_generator, member by member. `TarballScan` bounds that work with a `ReadLimits`
budget shared by all tarballs of one package (uncompressed bytes and members, each both
absolute and relative to the file's size, so a small bomb is refused within a fraction
of a second while a large real package is read to its end; tar extended headers, which
tarfile parses slowly, are capped and charged as members), refuses member paths that
would land outside the install prefix (absolute paths, `..` components, symlinks
pointing out of the package), and keeps the bytes of the few info/ members asked for.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import IO, Self

from conda_package_streaming import package_streaming

from graphconda.conda.names import show
from graphconda.errors import InvalidPackageError, TooLargeError

# Every package may expand this far and hold this many members, whatever its size: below
# these, reading costs well under a second even on a loaded machine.
FREE_UNPACKED_BYTES = 16 * 1024 * 1024
FREE_MEMBERS = 5_000
MAX_METADATA_MEMBER = 64 * 1024 * 1024  # an info/ member kept in memory
# tarfile parses pax records in Python at about a microsecond each, a thousand times the cost
# of decompressing a byte: extended headers (pax, GNU long names) are capped one by one and
# charged to the member budget, one member per EXTENDED_BYTES_PER_MEMBER bytes. Real ones
# hold a few records (path, mtime, ...) in well under 256 bytes.
MAX_EXTENDED_HEADER = 64 * 1024
EXTENDED_BYTES_PER_MEMBER = 256
_EXTENDED_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                             tarfile.GNUTYPE_LONGLINK})

_ZSTD_ERROR: type[BaseException] = getattr(package_streaming.zstd, "ZstdError", ValueError)
# What the standard library and the zstd binding raise on corrupt input (RecursionError:
# tarfile follows chains of pax headers recursively).
CORRUPT = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    LookupError,
    RecursionError,
    _ZSTD_ERROR,
)


@dataclass(frozen=True)
class ReadLimits:
    """How much work reading one package may cost (the `[limits]` settings of the same names)."""

    max_unpacked_bytes: int = 16 * 1024**3
    max_expansion_ratio: int = 200
    max_package_members: int = 200_000
    min_bytes_per_member: int = 64
    allow_unsafe_paths: bool = False

    def byte_budget(self, file_size: int) -> int:
        return min(self.max_unpacked_bytes, max(FREE_UNPACKED_BYTES, file_size * self.max_expansion_ratio))

    def member_budget(self, file_size: int) -> int:
        return min(self.max_package_members, max(FREE_MEMBERS, file_size // max(self.min_bytes_per_member, 1)))


class Budget:
    """The uncompressed bytes and members one package may still cost; raises TooLargeError past them."""

    def __init__(self, filename: str, file_size: int, limits: ReadLimits) -> None:
        self.filename = filename
        self.file_size = file_size
        self.limits = limits
        self.max_bytes = limits.byte_budget(file_size)
        self.max_members = limits.member_budget(file_size)
        self.bytes = 0
        self.members = 0

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.max_bytes:
            if self.max_bytes == self.limits.max_unpacked_bytes:
                why = "limits.max_unpacked_bytes"
            else:
                why = f"{self.limits.max_expansion_ratio} times its size of {self.file_size} bytes, " \
                      "limits.max_expansion_ratio: a decompression bomb?"
            raise TooLargeError(f"{self.filename} expands to more than {self.max_bytes} bytes ({why})")

    def add_extended_header(self, size: int) -> None:
        if size > MAX_EXTENDED_HEADER:
            raise TooLargeError(f"{self.filename} has a tar extended header of {size} bytes "
                                f"(at most {MAX_EXTENDED_HEADER})")
        self.add_member(size // EXTENDED_BYTES_PER_MEMBER)

    def add_member(self, count: int = 1) -> None:
        self.members += count
        if self.members > self.max_members:
            if self.max_members == self.limits.max_package_members:
                why = "limits.max_package_members"
            else:
                why = f"one per {self.limits.min_bytes_per_member} bytes of its size of {self.file_size} bytes, " \
                      "limits.min_bytes_per_member"
            raise TooLargeError(f"{self.filename} has more than {self.max_members} members ({why})")


class _Counted:
    """A decompressed stream that charges what is read from it to a Budget.

    tarfile reads (and skips payloads) through `read` only, and the decompressors produce
    no more than asked, so a bomb is stopped as soon as it passes the budget.
    """

    def __init__(self, raw: IO[bytes], budget: Budget) -> None:
        self.raw = raw
        self.budget = budget

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.budget.add_bytes(len(data))
        return data


def _tarinfo_class(budget: Budget) -> type[tarfile.TarInfo]:
    """A TarInfo that charges each extended header to `budget` before tarfile parses it."""

    class BudgetedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            info = super().frombuf(buf, encoding, errors)
            if info.type in _EXTENDED_TYPES:
                budget.add_extended_header(info.size)
            return info

    return BudgetedTarInfo


_SEPARATORS = re.compile(r"[/\\]")  # Windows clients split on both
_DRIVE = re.compile(r"[A-Za-z]:")


def _parts(path: str) -> list[str]:
    return [p for p in _SEPARATORS.split(path) if p not in ("", ".")]


def unsafe_path(path: str) -> str | None:
    """Why `path` (a member name, hard link target, paths.json `_path`) may leave the package, or None."""
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        return "absolute path"
    if ".." in _SEPARATORS.split(path):
        return "'..' component"
    return None


def unsafe_symlink(name: str, target: str) -> str | None:
    """Why a symlink `name` -> `target` points outside the package, or None (resolved lexically)."""
    if target.startswith(("/", "\\")) or _DRIVE.match(target):
        return f"symlink to the absolute path {show(target)}"
    depth = len(_parts(name)) - 1  # the link's directory
    for part in _parts(target):
        depth += -1 if part == ".." else 1
        if depth < 0:
            return f"symlink to {show(target)}, outside the package"
    return None


class TarballScan:
    """Walks the tarballs of one package: budget, path checks, and the info/ members to keep."""

    def __init__(self, filename: str, file_size: int, limits: ReadLimits) -> None:
        self.filename = filename
        self.limits = limits
        self.budget = Budget(filename, file_size, limits)
        self.kept: dict[str, bytes] = {}
        self._symlinks: set[str] = set()
        self._names: list[str] = []

    def refuse_path(self, name: str, reason: str) -> InvalidPackageError:
        return InvalidPackageError(
            f"{self.filename} is refused: member {show(name)} would land outside the install prefix ({reason}); "
            "a server operator may allow such paths for a channel (limits.allow_unsafe_paths_channels)",
            field="file",
        )

    def read(self, raw: IO[bytes], label: str, keep: Iterable[str] = ()) -> None:
        """List the tarball `raw` (decompressed) to its end, keeping the members named in `keep`."""
        wanted = frozenset(keep)
        open_tar = partial(package_streaming.TarfileNoSameOwner.open, tarinfo=_tarinfo_class(self.budget))
        stream = package_streaming.tar_generator(_Counted(raw, self.budget), tarfile_open=open_tar)
        try:
            for tar, member in stream:
                self.budget.add_member()
                name = member.name.removeprefix("./")
                self._check(member, name)
                if name in wanted:
                    self._keep(tar, member, name)
        except CORRUPT as exc:
            raise InvalidPackageError(
                f"{self.filename} is corrupt or truncated: its {label} could not be read", field="file"
            ) from exc
        finally:
            stream.close()

    def finish(self) -> dict[str, bytes]:
        """After every tarball: refuse members reached through a symlinked directory; the kept members."""
        if self._symlinks and not self.limits.allow_unsafe_paths:
            # "d -> ." then "d/x -> ../etc" looks lexically safe, yet lands outside: no member
            # may live below a symlink (conda-build never makes such packages).
            for name in self._names:
                parts = _parts(name)
                for end in range(1, len(parts)):
                    if "/".join(parts[:end]) in self._symlinks:
                        raise self.refuse_path(name, f"below the symlink {show('/'.join(parts[:end]))}")
        return self.kept

    def _check(self, member: tarfile.TarInfo, name: str) -> None:
        if self.limits.allow_unsafe_paths:
            return
        reason = unsafe_path(member.name)
        if reason is None and member.issym():
            reason = unsafe_symlink(name, member.linkname)
            self._symlinks.add("/".join(_parts(name)))
        elif reason is None and member.islnk():
            target = unsafe_path(member.linkname)
            reason = f"hard link to {show(member.linkname)}: {target}" if target else None
        if reason is not None:
            raise self.refuse_path(member.name, reason)
        self._names.append(name)

    def _keep(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        if name in self.kept:
            raise InvalidPackageError(f"{self.filename} is not a valid package: {name} appears twice", field="file")
        if not member.isfile():
            raise InvalidPackageError(f"{self.filename} is not a valid package: {name} is not a regular file",
                                      field="file")
        if member.size > MAX_METADATA_MEMBER:
            raise InvalidPackageError(
                f"{self.filename} is not a valid package: {name} is larger than {MAX_METADATA_MEMBER} bytes",
                field="file",
            )
        reader = tar.extractfile(member)
        data = reader.read() if reader is not None else b""
        if len(data) != member.size:
            raise EOFError(name)
        self.kept[name] = data
