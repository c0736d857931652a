"""Quetz package, version, search and alias routes in process: shapes, permissions, bad input."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import Package, PackageFile
from graphconda.services.context import Services
from graphconda.services.publisher import wait_published
from tests.helpers.packages import build_package, sha256_of
from tests.http.quetz.conftest import Keys

PACKAGE_FIELDS = {"name", "summary", "description", "url", "platforms", "current_version", "latest_change"}
VERSION_FIELDS = {"id", "channel_name", "package_name", "platform", "version", "build_string", "build_number",
                  "filename", "info", "uploader", "time_created", "download_count"}


async def upload(client: httpx2.AsyncClient, key: str, channel: str, path: Path) -> None:
    r = await client.post(f"/api/channels/{channel}/upload/{path.name}?sha256={sha256_of(path)}",
                          content=await anyio.Path(path).read_bytes(), headers={"X-API-Key": key})
    assert r.status_code == 201, r.text


@pytest.fixture
async def filled(client: httpx2.AsyncClient, keys: Keys, tmp_path: Path) -> list[Path]:
    """alice's public channel `pub` with hello 1.0 (noarch), hello 2.0 (linux-64) and other 0.1; private `hidden`."""
    for name, private in (("pub", False), ("hidden", True)):
        r = await client.post("/api/channels", json={"name": name, "private": private}, headers=keys.header("alice"))
        assert r.status_code == 201
    paths = [build_package(tmp_path, "hello", "1.0", "0", about={"summary": "Says hello", "home": "https://h.org"}),
             build_package(tmp_path, "hello", "2.0", "0", subdir="linux-64", about={"summary": "Says hello"}),
             build_package(tmp_path, "other", "0.1", "0", about={"summary": "something else"})]
    for path in paths:
        await upload(client, keys.alice, "pub", path)
    await upload(client, keys.alice, "hidden", build_package(tmp_path / "h", "secretpkg", "1.0", "0",
                                                               about={"summary": "Says hello too"}))
    return paths


async def test_packages_and_versions(client: httpx2.AsyncClient, keys: Keys, filled: list[Path]) -> None:
    listed = (await client.get("/api/channels/pub/packages")).json()
    assert [p["name"] for p in listed] == ["hello", "other"]
    assert set(listed[0]) == PACKAGE_FIELDS
    assert listed[0]["platforms"] == ["linux-64", "noarch"] and listed[0]["current_version"] == "2.0"
    found = (await client.get("/api/channels/pub/packages", params={"q": "oth"})).json()
    assert [p["name"] for p in found] == ["other"]
    page = (await client.get("/api/paginated/channels/pub/packages",
                             params={"skip": 1, "limit": 1, "order_by": "name:desc"})).json()
    assert page["pagination"] == {"skip": 1, "limit": 1, "all_records_count": 2}
    assert [p["name"] for p in page["result"]] == ["hello"]
    everything = (await client.get("/api/paginated/channels/pub/packages", params={"limit": -1})).json()
    assert len(everything["result"]) == 2
    one = (await client.get("/api/channels/pub/packages/hello")).json()
    assert one["name"] == "hello" and one["summary"] == "Says hello"
    versions = (await client.get("/api/channels/pub/packages/hello/versions")).json()
    assert sorted(v["version"] for v in versions) == ["1.0", "2.0"]
    assert set(versions[0]) == VERSION_FIELDS
    v = next(v for v in versions if v["version"] == "1.0")
    assert v["platform"] == "noarch" and v["filename"] == "hello-1.0-0.conda" and v["info"]["name"] == "hello"
    assert v["uploader"] == {"name": "alice", "avatar_url": ""} and v["download_count"] == 0
    got = (await client.get("/api/channels/pub/packages/hello/versions/noarch/hello-1.0-0.conda")).json()
    assert got == v
    for url in ("/api/channels/pub/packages/nope", "/api/channels/pub/packages/nope/versions",
                "/api/channels/pub/packages/hello/versions/noarch/other-0.1-0.conda",
                "/api/channels/hidden/packages", "/api/channels/hidden/packages/secretpkg",
                "/api/paginated/channels/hidden/packages"):
        assert (await client.get(url)).status_code == 404, url
    for params in ({"skip": "x"}, {"limit": "-5"}, {"order_by": "size"}, {"order_by": "name:sideways"}):
        assert (await client.get("/api/paginated/channels/pub/packages", params=params)).status_code == 422
    assert (await client.get("/api/channels/pub/packages/hello/versions",
                             params={"time_created__ge": "yesterday"})).status_code == 422
    recent = await client.get("/api/channels/pub/packages/hello/versions", params={"time_created__ge": "2999-01-01"})
    assert recent.json() == []


async def test_delete_versions_and_packages(client: httpx2.AsyncClient, keys: Keys, services: Services,
                                            filled: list[Path]) -> None:
    url = "/api/channels/pub/packages/hello/versions/noarch/hello-1.0-0.conda"
    assert (await client.delete(url)).status_code == 401
    assert (await client.delete(url, headers=keys.header("bob"))).status_code == 403
    assert (await client.delete("/api/channels/pub/packages/other/versions/noarch/hello-1.0-0.conda",
                                headers=keys.header("alice"))).status_code == 404  # not a file of `other`
    assert (await client.delete(url, headers=keys.header("alice"))).status_code == 200
    assert (await client.get(url)).status_code == 404
    assert (await client.delete("/api/channels/pub/packages/hello", headers=keys.header("bob"))).status_code == 403
    assert (await client.delete("/api/channels/pub/packages/hello", headers=keys.header("alice"))).status_code == 200
    assert (await client.get("/api/channels/pub/packages/hello")).status_code == 404
    async with services.db.read() as session:
        names = list(await session.scalars(select(Package.name)))
        files = int(await session.scalar(select(func.count()).select_from(PackageFile)) or 0)
    assert sorted(names) == ["other", "secretpkg"] and files == 2
    await wait_published(services)
    repodata = (await client.get("/get/pub/linux-64/repodata.json")).json()
    assert repodata["packages.conda"] == {}


async def test_package_members(client: httpx2.AsyncClient, keys: Keys, filled: list[Path]) -> None:
    url = "/api/channels/pub/packages/hello/members"
    first = (await client.get(url)).json()
    assert [(m["user"]["username"], m["role"]) for m in first] == [("alice", "owner")]  # the first uploader
    body = {"username": "bob", "role": "maintainer"}
    assert (await client.post(url, json=body)).status_code == 401
    assert (await client.post(url, json=body, headers=keys.header("bob"))).status_code == 403
    assert (await client.post(url, json=body, headers=keys.header("alice"))).status_code == 201
    assert (await client.post(url, json=body, headers=keys.header("alice"))).status_code == 409
    assert (await client.post(url, json={"username": "bob", "role": "x"},
                              headers=keys.header("alice"))).status_code == 422
    assert (await client.post("/api/channels/pub/packages/nope/members", json=body,
                              headers=keys.header("alice"))).status_code == 404
    members = (await client.get(url)).json()
    assert [(m["user"]["username"], m["role"]) for m in members] == [("alice", "owner"), ("bob", "maintainer")]


async def test_post_files_to_a_package(client: httpx2.AsyncClient, keys: Keys, filled: list[Path],
                                       tmp_path: Path, services: Services) -> None:
    new = build_package(tmp_path / "n", "hello", "3.0", "0")
    wrong = build_package(tmp_path / "n", "other", "0.2", "0")
    url = "/api/channels/pub/packages/hello/files/"
    r = await client.post(url, files={"files": (new.name, new.read_bytes())}, headers=keys.header("alice"))
    assert r.status_code == 201, r.text
    both = [("files", (new.name, new.read_bytes())), ("files", (wrong.name, wrong.read_bytes()))]
    r = await client.post(url, files=both, data={"force": "true"}, headers=keys.header("alice"))
    assert r.status_code == 422
    async with services.db.read() as session:
        assert await session.scalar(select(PackageFile.id).where(PackageFile.filename == wrong.name)) is None
    assert (await client.post("/api/channels/pub/packages/nope/files/", files={"files": (new.name, b"x")},
                              headers=keys.header("alice"))).status_code == 404


async def test_search(client: httpx2.AsyncClient, keys: Keys, filled: list[Path]) -> None:
    found = (await client.get("/api/packages/search/", params={"q": "hello"})).json()
    assert [(p["channel_name"], p["name"]) for p in found] == [("pub", "hello")]
    assert set(found[0]) == PACKAGE_FIELDS | {"channel_name"}
    mine = (await client.get("/api/packages/search/", params={"q": "hello"}, headers=keys.header("alice"))).json()
    assert {p["name"] for p in mine} == {"hello", "secretpkg"}
    assert (await client.get("/api/packages/search/", params={"q": ""})).status_code == 422
    channels = (await client.get("/api/channels/search/", params={"q": "i"})).json()
    assert channels == []  # "pub" has no i; "hidden" is private
    assert [c["name"] for c in (await client.get("/api/channels/search/", params={"q": "i"},
                                                 headers=keys.header("alice"))).json()] == ["hidden"]
    assert (await client.get("/api/channels/search/", params={"q": "pu"})).json() == [
        {"name": "pub", "description": "", "private": False}]


async def test_aliases_and_openapi(client: httpx2.AsyncClient, keys: Keys, filled: list[Path],
                                   services: Services) -> None:
    await wait_published(services)
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    assert (await client.get("/health/ready")).status_code == 200
    via_get = await client.get("/get/pub/noarch/repodata.json")
    via_channels = await client.get("/channels/pub/noarch/repodata.json")
    assert via_channels.status_code == 200 and via_channels.content == via_get.content
    assert (await client.get("/channels/hidden/noarch/repodata.json")).status_code == 404
    # conda's token path works with the alias too (a private channel, alice's key in the URL).
    assert (await client.get(f"/t/{keys.alice}/channels/hidden/noarch/repodata.json")).status_code == 200
    assert (await client.get("/channels/pub/noarch/hello-1.0-0.conda")).content == filled[0].read_bytes()
    doc = (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in (("/api/channels", "post"), ("/api/channels/{channel}/actions", "put"),
                         ("/api/paginated/channels/{channel}/packages", "get"), ("/api/api-keys/{key}", "delete"),
                         ("/api/jobs/{job_id}", "patch"), ("/api/channels/{channel}/upload/{filename}", "post"),
                         ("/api/packages/search/", "get"), ("/api/users/{username}/role", "put")):
        assert method in paths[path], (path, method)
    assert "201" in paths["/api/channels"]["post"]["responses"]
    assert paths["/api/channels/{channel}"]["get"]["parameters"][0]["name"] == "channel"
    assert paths["/api/channels/{channel}/actions"]["put"]["summary"].startswith("Run an action")


async def test_download_count(client: httpx2.AsyncClient, keys: Keys, services: Services, filled: list[Path]) -> None:
    from graphconda.services.metrics import aggregate

    await wait_published(services)
    for _ in range(3):
        assert (await client.get("/get/pub/noarch/hello-1.0-0.conda")).status_code == 200
    await services.downloads.flush()
    await aggregate(services)
    versions = (await client.get("/api/channels/pub/packages/hello/versions")).json()
    assert {v["filename"]: v["download_count"] for v in versions} == {"hello-1.0-0.conda": 3,
                                                                     "hello-2.0-0.conda": 0}
