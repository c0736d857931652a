"""Temporary files under <data_dir>/tmp named after the process that writes them, and removing those of dead processes.

Uploads spool bodies to `<kind>-<owner>-<random>.part`. The owner is
`<host>.<pid>.<start>`: a hash of the host name and pid namespace, the process id, and a
token that tells two processes apart even when the pid was reused (Linux: the boot id and
the process's start time from /proc; elsewhere none, and the pid alone is compared). A
process killed with SIGKILL cannot delete its files; any later process sharing the data
directory can tell, from the name alone, that their owner is gone and remove them, without
ever touching a file of a live process (files of other hosts or containers, which it
cannot check, are left alone).
Files named before this scheme are removed once unmodified for `LEGACY_AGE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from functools import cache
from pathlib import Path

TEMP_DIR = "tmp"  # under the data directory
LEGACY_AGE_SECONDS = 24 * 3600
_OWNED = re.compile(r"[a-z]+-(?P<host>[0-9a-f]{8})\.(?P<pid>\d{1,10})\.(?P<start>[0-9a-z]+)-[a-z0-9_]+\.part")
_LEGACY = re.compile(r"[a-z]+-[a-z0-9_]+\.part")


@cache
def _host() -> str:
    """The machine and pid namespace: containers sharing a data directory (even with one host
    name) each see their own pids, so they must not judge each other's files."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:8]


@cache
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """A token for the process `pid` that a later process with the same pid does not share; None if unknown."""
    boot = _boot_id()
    if boot is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses); starttime is field 22.
    return f"{boot}t{stat.rpartition(')')[2].split()[19]}"


@cache
def _owner(pid: int) -> str:
    return f"{_host()}.{pid}.{process_start(pid) or '0'}"


def temp_file(directory: Path, kind: str) -> tuple[int, Path]:
    """Create `<directory>/<kind>-<owner>-<random>.part` for this process; (open fd, path)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=f"{kind}-{_owner(os.getpid())}-", suffix=".part")
    return fd, Path(name)


def _alive(pid: int, start: str) -> bool:
    if pid == os.getpid():
        return start == _owner(pid).rsplit(".", 1)[1]
    if not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    except OSError:
        return True  # cannot tell: keep the file
    if start == "0":
        return True
    current = process_start(pid)
    return current is None or current == start


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether the temporary file `path` belongs to a process that is gone (never true for a live one)."""
    owned = _OWNED.fullmatch(path.name)
    if owned is not None:
        if owned["host"] != _host():
            return False  # another machine's file: its process cannot be checked from here
        return not _alive(int(owned["pid"]), owned["start"])
    if _LEGACY.fullmatch(path.name):
        try:
            modified = path.stat().st_mtime
        except OSError:
            return False
        return (now if now is not None else time.time()) - modified > LEGACY_AGE_SECONDS
    return False


def stale_files(directory: Path) -> list[Path]:
    """The temporary files in `directory` whose process is gone."""
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    return [path for path in entries if path.is_file() and is_stale(path)]


def remove_stale_files(directory: Path) -> list[Path]:
    """Delete the temporary files in `directory` whose process is gone; the paths removed."""
    removed: list[Path] = []
    for path in stale_files(directory):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
