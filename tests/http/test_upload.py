"""Upload routes (Quetz raw and multipart, prefix.dev) and the bad-input corpus, over HTTP."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from graphconda.services import api_keys, publishing
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.helpers.channels import (
    add_member,
    leftover_temp_files,
    make_channel,
    make_user,
    owner_key_for_main,
    package_files,
    repodata,
    shard,
    shard_index,
    snapshot,
)
from tests.helpers.packages import build_package, sha256_of


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"limits": {"max_upload_bytes": 1_000_000}}


@pytest.fixture
async def owner_key(services: Services) -> str:
    return await owner_key_for_main(services)


def quetz(filename: str, **params: str) -> str:
    return f"/api/channels/main/upload/{filename}" + ("?" + "&".join(f"{k}={v}" for k, v in params.items())
                                                       if params else "")


async def test_quetz_raw_upload_returns_the_record(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                                                   services: Services) -> None:
    path = build_package(tmp_path, "alpha", "1.0", "0", depends=["beta>=2"])
    response = await client.post(quetz(path.name, sha256=sha256_of(path)), content=path.read_bytes(),
                                 headers={"X-API-Key": owner_key})
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["sha256"] == sha256_of(path) and record["depends"] == ["beta>=2"]
    published = await repodata(services, "main", "noarch")
    assert published is not None and published["packages.conda"][path.name] == record


async def test_duplicate_is_409_and_force_replaces(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                                                   services: Services) -> None:
    first = build_package(tmp_path / "1", "alpha")
    second = build_package(tmp_path / "2", "alpha", files={"share/new": b"new"})
    headers = {"X-API-Key": owner_key}
    assert (await client.post(quetz(first.name), content=first.read_bytes(), headers=headers)).status_code == 201
    before = await snapshot(services)
    response = await client.post(quetz(second.name), content=second.read_bytes(), headers=headers)
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]
    assert await snapshot(services) == before
    response = await client.post(quetz(second.name, force="true"), content=second.read_bytes(), headers=headers)
    assert response.status_code == 201
    published = await repodata(services, "main", "noarch")
    assert published is not None and published["packages.conda"][second.name]["sha256"] == sha256_of(second)


async def test_prefix_dev_upload(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                                 services: Services) -> None:
    path = build_package(tmp_path, "gamma", "2.0", "h0_0", subdir="linux-64", fmt=".tar.bz2")
    headers = {"Authorization": f"Bearer {owner_key}", "X-File-Name": path.name, "X-File-SHA256": sha256_of(path)}
    response = await client.post("/api/v1/upload/main", content=path.read_bytes(), headers=headers)
    assert response.status_code == 201, response.text
    again = await client.post("/api/v1/upload/main", content=path.read_bytes(), headers=headers)
    assert again.status_code == 409
    missing = await client.post("/api/v1/upload/main", content=path.read_bytes(),
                                headers={"Authorization": f"Bearer {owner_key}"})
    assert missing.status_code == 422 and "X-File-Name" in missing.json()["detail"]
    published = await repodata(services, "main", "linux-64")
    assert published is not None and list(published["packages"]) == [path.name]


def prefix_form(filename: str, body: bytes, sha256: str, boundary: str = "rattler-build-boundary") -> bytes:
    """The multipart body `rattler-build upload prefix` (0.40+) sends: part `file` with its own
    X-File-Name / X-File-SHA256 headers, then an `attestation` text part."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"content-type: application/octet-stream\r\ncontent-length: {len(body)}\r\n"
            f"x-file-name: {filename}\r\nx-file-sha256: {sha256}\r\n\r\n").encode()
    tail = (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"attestation\"\r\n\r\n"
            f"{{}}\r\n--{boundary}--\r\n").encode()
    return head + body + tail


async def test_prefix_dev_multipart_upload_as_rattler_build_sends_it(
        client: httpx2.AsyncClient, owner_key: str, tmp_path: Path, services: Services) -> None:
    path = build_package(tmp_path, "delta", "1.0", "0")
    headers = {"Authorization": f"Bearer {owner_key}",
               "Content-Type": "multipart/form-data; boundary=rattler-build-boundary"}
    body = prefix_form(path.name, path.read_bytes(), sha256_of(path))
    response = await client.post("/api/v1/upload/main", content=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == sha256_of(path)
    again = await client.post("/api/v1/upload/main", content=body, headers=headers)
    assert again.status_code == 409
    before = await snapshot(services)
    other = build_package(tmp_path / "2", "epsilon", "1.0", "0")
    wrong = await client.post("/api/v1/upload/main", content=prefix_form(other.name, other.read_bytes(), "ab" * 32),
                              headers=headers)
    assert wrong.status_code == 422 and "sha256 mismatch" in wrong.json()["detail"]
    assert await snapshot(services) == before
    assert not leftover_temp_files(services)
    published = await repodata(services, "main", "noarch")
    assert published is not None and list(published["packages.conda"]) == [path.name]


async def test_multipart_several_files_and_force_field(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                                                       services: Services) -> None:
    a = build_package(tmp_path, "alpha", "1.0")
    b = build_package(tmp_path, "beta", "1.0", fmt=".tar.bz2")
    files = [("files", (a.name, a.read_bytes())), ("files", (b.name, b.read_bytes()))]
    headers = {"X-API-Key": owner_key}
    response = await client.post("/api/channels/main/files", files=files, headers=headers)
    assert response.status_code == 201, response.text
    assert sorted(r["name"] for r in response.json()) == ["alpha", "beta"]
    again = await client.post("/api/channels/main/files/", files=files, headers=headers)
    assert again.status_code == 409
    forced = await client.post("/api/channels/main/files/", files=files, data={"force": "true"}, headers=headers)
    assert forced.status_code == 201
    assert len(await package_files(services)) == 2


async def test_multipart_with_one_bad_file_stores_none(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                                                       services: Services) -> None:
    good = build_package(tmp_path, "alpha", "1.0")
    before = await snapshot(services)
    files = [("files", (good.name, good.read_bytes())), ("files", ("beta-1.0-0.conda", b"not a package"))]
    response = await client.post("/api/channels/main/files", files=files, headers={"X-API-Key": owner_key})
    assert response.status_code == 422
    assert "beta-1.0-0.conda" in response.json()["detail"]
    assert await snapshot(services) == before
    empty = await client.post("/api/channels/main/files", data={"force": "false"}, files={"other": ("x", b"")},
                              headers={"X-API-Key": owner_key})
    assert empty.status_code == 422 and "files" in empty.json()["detail"]
    assert not leftover_temp_files(services)


async def test_multipart_publishes_each_shard_index_once(client: httpx2.AsyncClient, owner_key: str,
                                                           tmp_path: Path, services: Services) -> None:
    """A multi-file request is one batch: each touched subdir's shard index is written once (not once per
    file), and every package is in its shard index when the response arrives."""
    subdirs = {i: "linux-64" if i % 2 else "noarch" for i in range(8)}
    paths = [build_package(tmp_path / str(i), f"pkg{i % 4}", f"1.{i}", subdir=subdirs[i]) for i in range(8)]
    written: list[str] = []
    publishing.add_listener(services, written.extend)
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    response = await client.post("/api/channels/main/files", files=files, headers={"X-API-Key": owner_key})
    assert response.status_code == 201, response.text
    indexes = [key for key in written if key.endswith("repodata_shards.msgpack.zst")]
    assert sorted(indexes) == ["channels/main/linux-64/repodata_shards.msgpack.zst",
                               "channels/main/noarch/repodata_shards.msgpack.zst"]
    for subdir, names in (("noarch", {"pkg0", "pkg2"}), ("linux-64", {"pkg1", "pkg3"})):
        index = await shard_index(services, "main", subdir)
        assert index is not None and set(index["shards"]) == names
        for name in names:
            found = await shard(services, "main", subdir, index["shards"][name])
            assert {fn for group in ("packages", "packages.conda") for fn in found.get(group, {})} == \
                {p.name for i, p in enumerate(paths) if p.name.startswith(name + "-") and subdirs[i] == subdir}


async def test_multipart_over_limit_stops(client: httpx2.AsyncClient, owner_key: str, services: Services) -> None:
    files = [("files", ("alpha-1.0-0.conda", b"\0" * 1_500_000))]
    response = await client.post("/api/channels/main/files", files=files, headers={"X-API-Key": owner_key})
    assert response.status_code == 413
    assert "1000000 bytes" in response.json()["detail"]
    assert not leftover_temp_files(services)


async def test_who_may_upload(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path, services: Services) -> None:
    path = build_package(tmp_path, "alpha")
    body = path.read_bytes()
    assert (await client.post(quetz(path.name), content=body)).status_code == 401
    member = await make_user(services, "member")
    await add_member(services, "main", member, Role.MEMBER)
    _, member_key = await api_keys.create_api_key(services, member)
    denied = await client.post(quetz(path.name), content=body, headers={"X-API-Key": member_key})
    assert denied.status_code == 403
    bad_key = await client.post(quetz(path.name), content=body, headers={"X-API-Key": "gc_" + "x" * 43})
    assert bad_key.status_code == 401
    assert not await package_files(services)


# --- the bad-input corpus ------------------------------------------------------------------


def tar_bz2(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:bz2") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def renamed_members(path: Path) -> bytes:
    """A valid .conda whose ZIP members carry another package's names."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename.replace("alpha-1.0-0", "other-1.0-0"), src.read(info))
    return out.getvalue()


INDEX = {"name": "alpha", "version": "1.0", "build": "0", "build_number": 0, "subdir": "noarch", "depends": []}

# name -> (filename, body builder from a valid .conda and .tar.bz2, expected status, words in the message)
CORPUS: dict[str, tuple[str, Callable[[Path, Path], bytes], int, str]] = {
    "empty file": ("alpha-1.0-0.conda", lambda c, t: b"", 422, "empty"),
    "truncated .conda": ("alpha-1.0-0.conda", lambda c, t: c.read_bytes()[: c.stat().st_size // 2], 422,
                         "not a valid .conda"),
    "truncated .tar.bz2": ("alpha-1.0-0.tar.bz2", lambda c, t: t.read_bytes()[: t.stat().st_size // 2], 422,
                           "corrupt or truncated"),
    "text named .conda": ("alpha-1.0-0.conda", lambda c, t: b"just some text\n", 422, "not a valid .conda"),
    "wrong .conda members": ("alpha-1.0-0.conda", lambda c, t: renamed_members(c), 422, "missing info-alpha-1.0-0"),
    "tar.bz2 without index.json": ("alpha-1.0-0.tar.bz2", lambda c, t: tar_bz2({"info/about.json": b"{}"}), 422,
                                   "no info/index.json"),
    "index.json not JSON": ("alpha-1.0-0.tar.bz2", lambda c, t: tar_bz2({"info/index.json": b"{not json"}), 422,
                            "not valid JSON"),
    "index.json lacks version": (
        "alpha-1.0-0.tar.bz2",
        lambda c, t: tar_bz2({"info/index.json": json.dumps({k: v for k, v in INDEX.items() if k != "version"})
                              .encode()}),
        422, "'version'"),
    "filename disagrees": ("alpha-2.0-0.tar.bz2", lambda c, t: t.read_bytes(), 422, "does not match"),
    "dot-dot name": ("..%2F..%2Falpha-1.0-0.conda", lambda c, t: c.read_bytes(), 422, "must not contain"),
    "slash in name": ("sub%2Falpha-1.0-0.conda", lambda c, t: c.read_bytes(), 422, "must not contain"),
    "uppercase name": ("Alpha-1.0-0.conda", lambda c, t: c.read_bytes(), 422, "invalid package name"),
    "over-long name": ("a" * 70 + "-1.0-0.conda", lambda c, t: c.read_bytes(), 422, "limit is 64"),
    "over-long build": ("alpha-1.0-" + "b" * 70 + ".conda", lambda c, t: c.read_bytes(), 422, "limit is 64"),
    "over the size limit": ("alpha-1.0-0.conda", lambda c, t: b"\0" * 1_200_000, 413, "upload limit"),
}


@pytest.fixture
async def published_state(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                          services: Services) -> tuple[Path, Path, Any]:
    """One valid package already in the channel, and the valid files the corpus mangles."""
    existing = build_package(tmp_path / "existing", "zeta", "1.0")
    response = await client.post(quetz(existing.name), content=existing.read_bytes(), headers={"X-API-Key": owner_key})
    assert response.status_code == 201
    assert await repodata(services, "main", "noarch") is not None
    conda = build_package(tmp_path / "valid", "alpha", "1.0", "0")
    tarball = build_package(tmp_path / "valid", "alpha", "1.0", "0", fmt=".tar.bz2")
    return conda, tarball, await snapshot(services)


@pytest.mark.parametrize("case", list(CORPUS))
async def test_bad_input_is_refused_and_leaves_no_trace(case: str, client: httpx2.AsyncClient, owner_key: str,
                                                        published_state: tuple[Path, Path, Any],
                                                        services: Services) -> None:
    conda, tarball, before = published_state
    filename, make_body, status, words = CORPUS[case]
    body = make_body(conda, tarball)
    routes = [
        client.post(quetz(filename), content=body, headers={"X-API-Key": owner_key}),
        client.post("/api/v1/upload/main", content=body,
                    headers={"Authorization": f"Bearer {owner_key}", "X-File-Name": filename.replace("%2F", "/")}),
    ]
    for request in routes:
        response = await request
        assert response.status_code == status, (case, response.text)
        assert words in response.json()["detail"], (case, response.text)
        assert await snapshot(services) == before, case
    assert not leftover_temp_files(services)


async def test_wrong_sha256(client: httpx2.AsyncClient, owner_key: str, published_state: tuple[Path, Path, Any],
                            services: Services) -> None:
    conda, _, before = published_state
    response = await client.post(quetz(conda.name, sha256="ab" * 32), content=conda.read_bytes(),
                                 headers={"X-API-Key": owner_key})
    assert response.status_code == 422 and "sha256 mismatch" in response.json()["detail"]
    response = await client.post(quetz(conda.name, sha256="nothex"), content=conda.read_bytes(),
                                 headers={"X-API-Key": owner_key})
    assert response.status_code == 422 and "64 hexadecimal" in response.json()["detail"]
    response = await client.post("/api/v1/upload/main", content=conda.read_bytes(),
                                 headers={"X-API-Key": owner_key, "X-File-Name": conda.name,
                                          "X-File-SHA256": "cd" * 32})
    assert response.status_code == 422 and "sha256 mismatch" in response.json()["detail"]
    assert await snapshot(services) == before


async def test_mirror_missing_and_private_channels(client: httpx2.AsyncClient, owner_key: str,
                                                   published_state: tuple[Path, Path, Any],
                                                   services: Services) -> None:
    conda, _, _ = published_state
    await make_channel(services, "mirrored", mirror=True)
    await make_channel(services, "secret", private=True)
    before = await snapshot(services)
    body = conda.read_bytes()
    mirror = await client.post(f"/api/channels/mirrored/upload/{conda.name}", content=body,
                               headers={"X-API-Key": owner_key})
    assert mirror.status_code == 405 and "mirror channel" in mirror.json()["detail"]  # Quetz's status
    missing = await client.post(f"/api/channels/nope/upload/{conda.name}", content=body,
                                headers={"X-API-Key": owner_key})
    assert missing.status_code == 404 and missing.json()["detail"] == "channel not found"
    private = await client.post(f"/api/channels/secret/upload/{conda.name}", content=body)
    assert private.status_code == 404 and private.json()["detail"] == "channel not found"
    outsider = await make_user(services, "outsider")
    _, outsider_key = await api_keys.create_api_key(services, outsider)
    private = await client.post(f"/api/channels/secret/upload/{conda.name}", content=body,
                                headers={"X-API-Key": outsider_key})
    assert private.status_code == 404
    assert await snapshot(services) == before


async def test_storage_down_is_503_not_500(client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                                           services: Services) -> None:
    # The blob store fails (here: its root became a file); clients and uploaders should retry, not give up.
    root = services.settings.storage_path
    root.mkdir(parents=True, exist_ok=True)
    for child in sorted(root.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    root.rmdir()
    root.write_text("a file where the storage directory should be")
    path = build_package(tmp_path, "alpha")
    response = await client.post(quetz(path.name), content=path.read_bytes(), headers={"X-API-Key": owner_key})
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == "storage is temporarily unavailable; try again later"
    assert str(root) not in response.text
    assert not await package_files(services)


@pytest.mark.parametrize("route", ["/api/channels/{c}/files", "/api/v1/upload/{c}"])
@pytest.mark.parametrize(("channel", "key", "status"), [("main", False, 401), ("nope", True, 404),
                                                         ("secret", False, 404)])
async def test_multipart_refusals_come_before_the_body_is_read(
    route: str, channel: str, key: bool, status: int, client: httpx2.AsyncClient, owner_key: str,
    services: Services,
) -> None:
    """Anonymous callers and unknown or invisible channels cannot make the server spool a multipart body."""
    await make_channel(services, "secret", private=True)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="alpha-1.0-0.conda"\r\n\r\n'
        for _ in range(64):
            sent += 1
            yield b"\0" * 65536

    headers = {"Content-Type": "multipart/form-data; boundary=b", **({"X-API-Key": owner_key} if key else {})}
    response = await client.post(route.format(c=channel), content=body(), headers=headers)
    assert response.status_code == status
    assert sent < 64  # the refusal did not wait for the upload
    assert not leftover_temp_files(services)
