"""The `graphconda upload` client: streams package files to a server's upload route, one by one.

It talks HTTP only (the Quetz raw route, with the file's sha256 so the server verifies
it), shows a progress bar per file, and keeps going past a file the server refuses,
printing the server's own message for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import httpx2
from tqdm import tqdm

CHUNK = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _detail(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail) if detail else str(body)[:500]


def upload_files(
    url: str,
    channel: str,
    files: Sequence[str | Path],
    *,
    api_key: str | None,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    transport: httpx2.BaseTransport | None = None,
) -> int:
    """Upload `files` to `channel` at `url`; return how many failed."""
    headers = {"X-API-Key": api_key} if api_key else {}
    failed = 0
    timeout = httpx2.Timeout(60.0, read=600.0, write=600.0)
    with httpx2.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport) as http:
        for name in files:
            path = Path(name)
            if not path.is_file():
                echo(f"{path}: failed: no such file")
                failed += 1
                continue
            try:
                response = _upload_one(http, channel, path, force=force, progress=progress)
            except (httpx2.HTTPError, OSError) as exc:
                echo(f"{path.name}: failed: {exc}")
                failed += 1
                continue
            if response.status_code == 201:
                echo(f"{path.name}: uploaded to {channel}")
            else:
                echo(f"{path.name}: failed ({response.status_code}): {_detail(response)}")
                failed += 1
    return failed


def _upload_one(http: httpx2.Client, channel: str, path: Path, *, force: bool, progress: bool) -> httpx2.Response:
    size = path.stat().st_size
    sha256 = _sha256(path)
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=path.name, disable=not progress,
                                     leave=False) as bar:

        def body() -> Iterator[bytes]:
            while chunk := f.read(CHUNK):
                bar.update(len(chunk))
                yield chunk

        return http.post(
            f"/api/channels/{quote(channel, safe='')}/upload/{quote(path.name, safe='')}",
            params={"sha256": sha256, "force": "true" if force else "false"},
            content=body(),
            headers={"Content-Length": str(size)},
        )
