"""Writing a subdir's repodata.json (with its gzip / bz2 / zstd copies) and run_exports.json to files
from records that arrive in batches, in memory bounded by a batch, not by the subdir.

A subdir of 200,000 records makes a ~100 MB repodata.json: built as one string, its parts,
the string, its bytes and their compressed copies held it several times over. Here records
are spliced into the files as they come (their JSON is not parsed), gzip and bz2 are fed the
same bytes on the way, and so is zstd when the document's size is given up front (its frame
records the content size; the records' lengths give it), else zstd compresses the finished
file. The files hold exactly the bytes of `repodata.build_repodata`,
`compress_gzip`, `compress_bz2`, `compress_zst` and `build_run_exports` for the same records.

Legacy records must come in increasing filename order (the database sorts them); v3 records
(CEP 48) are few and given up front, since `info` counts them.
"""

from __future__ import annotations

import bz2
import contextlib
import json
import os
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from graphconda.conda import repodata as rd

_COPY = 1 << 20
_MIDDLE = ',"packages.conda":{'  # between the two maps of a document


class _Part:
    """One `{...}` object of sorted keys: keys must arrive in increasing order."""

    def __init__(self, write: Callable[[bytes], object], what: str) -> None:
        self.write, self.what = write, what
        self.last: str | None = None

    def add(self, items: list[tuple[str, str]]) -> None:
        if not items:
            return
        keys = [key for key, _ in items]
        previous = self.last
        for key in keys:
            if previous is not None and key <= previous:
                raise ValueError(f"{self.what}: {key!r} arrived after {previous!r} (records must be sorted)")
            previous = key
        text = ",".join([rd._encode_str(key) + ":" + value for key, value in items])
        self.write((text if self.last is None else "," + text).encode())
        self.last = previous


class _Document:
    """A JSON document of two sorted maps (`packages`, `packages.conda`) written in one pass.

    The first map goes straight to the output; the second to a side file, appended when
    finished. `sinks` (compressors) see the output's bytes in document order.
    """

    def __init__(self, path: Path, side: Path, head: str, sinks: list[Callable[[bytes], None]],
                 opener: Callable[[Path], BinaryIO]) -> None:
        self.path, self.side_path = path, side
        self.head = head  # written with the first records (sinks may be added until then)
        self.sinks = sinks
        self.out = opener(path)
        self.side = opener(side)
        self._main = _Part(self._emit, "packages")
        self._conda = _Part(self.side.write, "packages.conda")

    def _emit(self, data: bytes) -> None:
        if self.head:
            head, self.head = self.head, ""
            self._emit(head.encode())
        self.out.write(data)
        for sink in self.sinks:
            sink(data)

    def add(self, tar_bz2: list[tuple[str, str]], conda: list[tuple[str, str]]) -> None:
        if self.head:
            self._emit(b"")
        self._main.add(tar_bz2)
        self._conda.add(conda)

    def finish(self, middle: str, tail: str) -> int:
        """Close the first map, append `middle`, the second map, then `tail`; the file's size."""
        self._emit(b"}" + middle.encode())
        self.side.close()
        with open(self.side_path, "rb") as side:
            while chunk := side.read(_COPY):
                self._emit(chunk)
        os.unlink(self.side_path)
        self._emit(("}" + tail + "}").encode())
        self.out.close()
        return os.path.getsize(self.path)


class _Compressed:
    """A streaming compressor writing to a file (gzip as rd.compress_gzip makes it, or bz2)."""

    def __init__(self, path: Path, kind: str, opener: Callable[[Path], BinaryIO]) -> None:
        self.path = path
        self.file = opener(path)
        # wbits 31: the gzip header zlib writes, with mtime 0 and no name: gzip.compress(mtime=0)'s bytes.
        self.compressor = (zlib.compressobj(6, zlib.DEFLATED, 31) if kind == "gzip"
                           else bz2.BZ2Compressor(9))

    def __call__(self, data: bytes) -> None:
        if out := self.compressor.compress(data):
            self.file.write(out)

    def finish(self) -> None:
        self.file.write(self.compressor.flush())
        self.file.close()


class _Zstd:
    """zstd fed as the document is written, its frame's content size given up front (`size`).

    The compressor's workers run while the document is still being made. The bytes are those of
    compressing the finished file (the same parameters and pledged size); a document that turns out
    longer or shorter than announced (rows changed between the two reads) is not compressed here
    (`finish` says False) and the caller compresses the finished file instead.
    """

    def __init__(self, path: Path, size: int, level: int, opener: Callable[[Path], BinaryIO]) -> None:
        self.path, self.size = path, size
        self.file = opener(path)
        self.compressor = rd.zstd_compressor(level, size).compressobj(size=size)
        self.written = 0
        self.failed = False

    def __call__(self, data: bytes) -> None:
        self.written += len(data)
        if self.failed or self.written > self.size:
            self.failed = True
            return
        if out := self.compressor.compress(data):
            self.file.write(out)

    def finish(self) -> bool:
        """Complete the file; False (nothing usable in it) if the document was not the size announced."""
        self.failed = self.failed or self.written != self.size
        if self.failed:
            self.file.close()
            return False
        self.file.write(self.compressor.flush())
        self.file.close()
        return True


class SubdirFiles:
    """repodata.json (+ .gz, optional .bz2, then .zst) and run_exports.json of one subdir, as files.

    `paths(name)` gives each output's path (the caller's temporary files). Feed legacy
    records with `add` (sorted by filename across calls), then call `finish`; `close`
    releases the files after a failure (the caller deletes them).
    """

    def __init__(self, subdir: str, paths: Callable[[str], Path], *, removed: Iterable[str] = (),
                 v3: Iterable[rd.RecordEntry | tuple[str, str, bool]] = (), bz2: bool = False) -> None:
        self.subdir = subdir
        self.paths = paths
        self._opened: list[BinaryIO] = []
        try:
            self._start(removed, v3, bz2)
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path) -> BinaryIO:
        file = open(path, "wb")  # noqa: SIM115 (closed by finish, or by close after a failure)
        self._opened.append(file)
        return file

    def _start(self, removed: Iterable[str], v3: Iterable[rd.RecordEntry | tuple[str, str, bool]], bz2: bool) -> None:
        subdir, paths = self.subdir, self.paths
        self.removed = sorted(set(removed))
        self.v3: dict[str, dict[str, str]] = {".tar.bz2": {}, ".conda": {}}
        for filename, record_json, _ in v3:
            ext = _ext(filename)
            self.v3[ext][filename[: -len(ext)]] = record_json
        self.n_v3 = len(self.v3[".conda"]) + len(self.v3[".tar.bz2"])
        info: dict[str, object] = {"subdir": subdir}
        if self.n_v3:
            info["repodata_revisions"] = {"v3": {"n_packages": self.n_v3}}
        self.gzip = _Compressed(paths("repodata.json.gz"), "gzip", self._open)
        self.bz2 = _Compressed(paths("repodata.json.bz2"), "bz2", self._open) if bz2 else None
        sinks: list[Callable[[bytes], None]] = [self.gzip]
        if self.bz2 is not None:
            sinks.append(self.bz2)
        self.repodata = _Document(paths("repodata.json"), paths("repodata.conda.part"),
                                  '{"info":' + rd._dumps(info) + ',"packages":{', sinks, self._open)
        self.tail = ',"removed":' + rd._dumps(self.removed) + ',"repodata_version":' + str(rd.REPODATA_VERSION)
        if self.n_v3:
            self.tail += (',"v3":{"conda":' + rd._join_map(self.v3[".conda"]) + ',"tar.bz2":'
                          + rd._join_map(self.v3[".tar.bz2"]) + "}")
        self.zstd: _Zstd | None = None
        self.run_exports = _Document(paths("run_exports.json"), paths("run_exports.conda.part"),
                                     '{"info":' + rd._dumps({"subdir": subdir, "version": rd.RUN_EXPORTS_VERSION})
                                     + ',"packages":{', [], self._open)

    def compress_while_writing(self, tar_bz2: int, conda: int, content: int, level: int) -> None:
        """Compress repodata.json.zst as the document is written, not after it (the document is then
        made while zstd's workers run). The legacy records to come give the document's size, which
        the zstd frame records: how many of each kind, and `content`, the sum of their filenames'
        and record JSONs' lengths in UTF-8 bytes. (A filename JSON must escape makes the size wrong:
        zstd then compresses the finished file, as without this call.) Call before `add`."""
        size = content + 3 * (tar_bz2 + conda)  # "filename":record
        size += max(tar_bz2 - 1, 0) + max(conda - 1, 0)  # the commas between them
        size += len((self.repodata.head + "}" + _MIDDLE + "}" + self.tail + "}").encode())
        self.zstd = _Zstd(self.paths("repodata.json.zst"), size, level, self._open)
        self.repodata.sinks.append(self.zstd)

    def add(self, rows: Iterable[tuple[str, str]]) -> None:
        """Legacy (not v3) records as (filename, record JSON), in increasing filename order."""
        tar: list[tuple[str, str]] = []
        conda: list[tuple[str, str]] = []
        tar_exports: list[tuple[str, str]] = []
        conda_exports: list[tuple[str, str]] = []
        for filename, record_json in rows:
            ext = _ext(filename)
            exports = (rd._dumps(json.loads(record_json).get("run_exports") or {})
                       if '"run_exports"' in record_json else "{}")
            (conda if ext == ".conda" else tar).append((filename, record_json))
            (conda_exports if ext == ".conda" else tar_exports).append((filename, '{"run_exports":' + exports + "}"))
        self.repodata.add(tar, conda)
        self.run_exports.add(tar_exports, conda_exports)

    def finish(self, zstd_level: int) -> dict[str, Path]:
        """Complete every file; {file name (layout's): path}."""
        size = self.repodata.finish(_MIDDLE, self.tail)
        self.run_exports.finish(_MIDDLE, "")
        self.gzip.finish()
        files = {"repodata.json": self.repodata.path, "repodata.json.gz": self.gzip.path,
                 "run_exports.json": self.run_exports.path}
        if self.bz2 is not None:
            self.bz2.finish()
            files["repodata.json.bz2"] = self.bz2.path
        zst = self.zstd.path if self.zstd is not None else self.paths("repodata.json.zst")
        if self.zstd is None or not self.zstd.finish():
            with open(self.repodata.path, "rb") as source, open(zst, "wb") as out:
                rd.zstd_compressor(zstd_level, size).copy_stream(source, out, size=size, read_size=_COPY,
                                                                 write_size=_COPY)
        files["repodata.json.zst"] = zst
        return files

    def close(self) -> None:
        """Release every file after a failure (a full disk fails their last flush too)."""
        for file in self._opened:
            _close(file)


def _close(file: BinaryIO) -> None:
    with contextlib.suppress(OSError):  # the error that matters is the one that brought us here
        file.close()


def _ext(filename: str) -> str:
    if filename.endswith(".conda"):
        return ".conda"
    if filename.endswith(".tar.bz2"):
        return ".tar.bz2"
    raise ValueError(f"not a conda package filename: {filename!r}")
