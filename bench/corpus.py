"""Benchmark records: real conda records from ../shared/corpus replicated to any count, or synthetic ones.

Replicas get a name suffix (`-r<N>`) so the number of package names grows with the record
count (about 22 records per name, near conda-forge's ratio); dependency strings, field
sizes and shapes stay those of real packages. Without the corpus folder (a user's
checkout) records are synthesised with similar sizes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

# ../shared/corpus beside the checkout; a worktree under ../wt/ looks one level further up.
CORPUS = next((p / "shared" / "corpus" / "repodata" for p in Path(__file__).resolve().parents[2:4]
               if (p / "shared" / "corpus" / "repodata").is_dir()),
              Path(__file__).resolve().parents[2] / "shared" / "corpus" / "repodata")
_DROP = ("fn", "url", "channel")


def _real_records(corpus: Path) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(corpus.rglob("*.zst")):
        doc = json.loads(zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 30))
        if "packages" in doc or "packages.conda" in doc:
            items = [*doc.get("packages", {}).items(), *doc.get("packages.conda", {}).items()]
        else:  # index format: {filename: record}
            items = list(doc.items())
        for filename, record in items:
            if isinstance(record, dict) and {"name", "version", "build"} <= record.keys():
                out.append((filename, record))
    return out


def _synthetic(n: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(42)
    names = [f"pkg{i}" for i in range(max(n // 20, 1))]
    out = []
    for i in range(n):
        name = names[i % len(names)]
        record = {
            "build": f"py39h{i:08x}_0", "build_number": 0, "license": "BSD-3-Clause", "license_family": "BSD",
            "depends": [f"{rng.choice(names)} >={rng.randint(0, 9)}.{rng.randint(0, 9)}" for _ in range(6)]
            + ["python >=3.9,<3.10.0a0", "libgcc-ng >=12"],
            "constrains": [f"{rng.choice(names)} <{rng.randint(1, 9)}"],
            "name": name, "version": f"{i % 50}.{i % 7}.{i % 3}", "subdir": "linux-64",
            "timestamp": 1_700_000_000_000 + i, "size": rng.randint(10_000, 5_000_000),
        }
        out.append((f"{name}-{record['version']}-{record['build']}.conda", record))
    return out


def package_sizes() -> list[int]:
    """The byte sizes of the corpus's package files (of synthetic records without the corpus)."""
    base = (_real_records(CORPUS) if CORPUS.is_dir() else []) or _synthetic(25_000)
    return [size for _, record in base if isinstance(size := record.get("size"), int) and size > 0]


def records(n: int, subdir: str = "linux-64") -> Iterator[tuple[str, dict[str, Any]]]:
    """`n` (filename, record) pairs with unique filenames, all claiming `subdir`."""
    base = _real_records(CORPUS) if CORPUS.is_dir() else []
    if not base:
        base = _synthetic(min(n, 25_000))
    for i in range(n):
        replica, (filename, original) = divmod(i, len(base))[0], base[i % len(base)]
        record = {k: v for k, v in original.items() if k not in _DROP}
        ext = ".conda" if filename.endswith(".conda") else ".tar.bz2"
        if replica:
            record["name"] = f"{record['name']}-r{replica}"
        record["subdir"] = subdir
        record["build"] = f"{record['build']}_{i}"  # unique filenames, even where the corpus repeats one
        seed = f"{i}:{filename}".encode()
        record["md5"] = hashlib.md5(seed, usedforsecurity=False).hexdigest()
        record["sha256"] = hashlib.sha256(seed).hexdigest()
        yield f"{record['name']}-{record['version']}-{record['build']}{ext}", record


def source() -> str:
    return f"real records from {CORPUS}" if CORPUS.is_dir() else "synthetic records (corpus folder absent)"
