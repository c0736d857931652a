"""Packages over GraphQL: the Package and PackageFile types, uploads (multipart) and deletions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from graphconda.services import layout
from graphconda.services.context import Services
from tests.helpers.packages import build_package
from tests.schema.conftest import Gql, Ingest, MakeChannel, People, Upload, data, set_member

PACKAGE = """
query($channel: String!, $name: String!) {
  package(channel: $channel, name: $name) {
    name summary description license home latestVersion
    channel { name packageCount subdirs size }
    members { role user { username } }
    latestFiles { filename }
    versions(first: 10) {
      totalCount
      edges { node {
        filename subdir name version build buildNumber size md5 sha256 depends constrains
        uploader { username } uploadedAt downloadUrl package { name }
      } }
    }
  }
}"""

DELETE = """
mutation($channel: String!, $subdir: String!, $filename: String!) {
  deletePackageFile(channel: $channel, subdir: $subdir, filename: $filename) {
    __typename
    ... on DeletedPackageFile { channel subdir filename }
    ... on InvalidInput { field }
    ... on Error { message }
  }
}"""


async def stored_files(services: Services, channel: str) -> list[str]:
    """Package file blobs in storage (not published repodata)."""
    found = []
    async for blob in services.storage.list(layout.channel_prefix(channel)):
        parsed = layout.parse_package_key(blob.key)
        if parsed:
            found.append(parsed[3])
    return sorted(found)


async def file_count(gql: Gql, channel: str, as_: Any) -> int:
    found = data(await gql("query($c: String!) { channel(name: $c) { packages { edges { node { versions { "
                           "totalCount } } } } } }", {"c": channel}, as_=as_))["channel"]
    return sum(e["node"]["versions"]["totalCount"] for e in found["packages"]["edges"])


async def test_upload_then_query_everything(
    gql: Gql, people: People, make_channel: MakeChannel, upload: Upload, tmp_path: Path, services: Services
) -> None:
    await make_channel("tools", people.alice)
    about = {"summary": "Fast arrays", "description": "Long text", "license": "BSD-3-Clause",
             "home": "https://numpy.org"}
    old = build_package(tmp_path, "numpy", "1.9", "0", about=about)
    new = build_package(tmp_path, "numpy", "1.10", "py_0", subdir="linux-64", depends=["python >=3.10"],
                        constrains=["scipy >=1"], build_number=3, about=about)
    response = await upload("tools", [(old.name, old.read_bytes()), (new.name, new.read_bytes())], people.alice)
    assert response.status_code == 200
    results = data(response.json())["uploadPackages"]
    assert [(r["__typename"], r["filename"], r["subdir"]) for r in results] == [
        ("PackageFile", "numpy-1.9-0.conda", "noarch"),
        ("PackageFile", "numpy-1.10-py_0.conda", "linux-64"),
    ]
    package = data(await gql(PACKAGE, {"channel": "tools", "name": "numpy"}))["package"]
    assert {k: package[k] for k in ("name", "summary", "description", "license", "home", "latestVersion")} == {
        "name": "numpy", "summary": "Fast arrays", "description": "Long text", "license": "BSD-3-Clause",
        "home": "https://numpy.org", "latestVersion": "1.10",  # conda version order, not string order
    }
    assert package["channel"] == {"name": "tools", "packageCount": 1, "subdirs": ["linux-64", "noarch"],
                                  "size": old.stat().st_size + new.stat().st_size}
    assert package["members"] == [{"role": "OWNER", "user": {"username": "alice"}}]
    assert package["latestFiles"] == [{"filename": "numpy-1.10-py_0.conda"}]
    assert package["versions"]["totalCount"] == 2
    newest = package["versions"]["edges"][0]["node"]
    assert newest["filename"] == "numpy-1.10-py_0.conda"  # newest upload first
    assert {k: newest[k] for k in ("subdir", "name", "version", "build", "buildNumber", "size", "depends",
                                   "constrains", "uploader", "downloadUrl", "package")} == {
        "subdir": "linux-64", "name": "numpy", "version": "1.10", "build": "py_0", "buildNumber": 3,
        "size": new.stat().st_size, "depends": ["python >=3.10"], "constrains": ["scipy >=1"],
        "uploader": {"username": "alice"},
        "downloadUrl": "http://testserver/get/tools/linux-64/numpy-1.10-py_0.conda", "package": {"name": "numpy"},
    }
    assert len(newest["md5"]) == 32 and len(newest["sha256"]) == 64 and newest["uploadedAt"]
    assert await stored_files(services, "tools") == ["numpy-1.10-py_0.conda", "numpy-1.9-0.conda"]


async def test_versions_filter_and_pages(gql: Gql, people: People, make_channel: MakeChannel, ingest: Ingest) -> None:
    await make_channel("tools", people.alice)
    for version in ("1", "2", "3"):
        await ingest("tools", people.alice, "zlib", version)
    await ingest("tools", people.alice, "zlib", "4", subdir="linux-64")
    query = """query($after: String, $subdir: String) { package(channel: "tools", name: "zlib") {
                 versions(first: 2, after: $after, subdir: $subdir) {
                   totalCount edges { node { version } } pageInfo { hasNextPage endCursor } } } }"""
    first = data(await gql(query, {}))["package"]["versions"]
    assert [e["node"]["version"] for e in first["edges"]] == ["4", "3"]
    assert first["totalCount"] == 4 and first["pageInfo"]["hasNextPage"]
    rest = data(await gql(query, {"after": first["pageInfo"]["endCursor"]}))["package"]["versions"]
    assert [e["node"]["version"] for e in rest["edges"]] == ["2", "1"] and not rest["pageInfo"]["hasNextPage"]
    noarch = data(await gql(query, {"subdir": "noarch"}))["package"]["versions"]
    assert noarch["totalCount"] == 3 and [e["node"]["version"] for e in noarch["edges"]] == ["3", "2"]
    bad = await gql(query, {"after": "WyJjaGFubmVsIiwiYSJd"})  # a channel-list cursor
    assert bad["errors"][0]["message"].startswith("invalid cursor")


async def test_channel_packages_pages(gql: Gql, people: People, make_channel: MakeChannel, ingest: Ingest) -> None:
    await make_channel("tools", people.alice)
    query = """query($first: Int, $after: String, $q: String) { channel(name: "tools") {
                 packages(first: $first, after: $after, nameContains: $q) {
                   totalCount edges { node { name } } pageInfo { hasNextPage endCursor } } } }"""

    async def names(**variables: Any) -> tuple[list[str], bool, str | None, int]:
        found = data(await gql(query, variables))["channel"]["packages"]
        info = found["pageInfo"]
        return [e["node"]["name"] for e in found["edges"]], info["hasNextPage"], info["endCursor"], found["totalCount"]

    assert await names(first=3) == ([], False, None, 0)  # empty
    for name in ("abc", "abd", "xyz", "bab"):
        await ingest("tools", people.alice, name)
    page, more, cursor, total = await names(first=2)
    assert (page, more, total) == (["abc", "abd"], True, 4)
    page, more, _, _ = await names(first=2, after=cursor)
    assert (page, more) == (["bab", "xyz"], False)  # an exact last page
    assert (await names(first=4))[:2] == (["abc", "abd", "bab", "xyz"], False)
    assert (await names(first=10, q="ab"))[0::3] == (["abc", "abd", "bab"], 3)
    single = data(await gql('{ channel(name: "tools") { package(name: "xyz") { name } none: package(name: "x") '
                            "{ name } } }"))
    assert single["channel"] == {"package": {"name": "xyz"}, "none": None}


@pytest.mark.parametrize(
    ("filename", "body", "field", "message"),
    [
        ("numpy-1.0-0.conda", b"not a zip", "file", "numpy-1.0-0.conda is not a valid .conda file"),
        ("numpy.conda", None, "filename", "invalid filename 'numpy.conda'"),
        ("../numpy-1.0-0.conda", None, "filename", "must not contain '/'"),
        ("a/numpy-1.0-0.conda", None, "filename", "must not contain '/'"),
        ("numpy-1.0-0.zip", None, "filename", "ends in '.conda' or '.tar.bz2'"),
        ("scipy-1.0-0.conda", "numpy", "file", ""),  # metadata says numpy, the name says scipy
    ],
)
async def test_invalid_uploads_are_refused_and_leave_nothing(
    people: People, make_channel: MakeChannel, upload: Upload, tmp_path: Path, services: Services, gql: Gql,
    filename: str, body: bytes | str | None, field: str, message: str,
) -> None:
    await make_channel("tools", people.alice)
    if body is None or isinstance(body, str):
        body = build_package(tmp_path, body or "numpy", "1.0", "0").read_bytes()
    response = await upload("tools", [(filename, body)], people.alice)
    [result] = data(response.json())["uploadPackages"]
    assert result["__typename"] == "InvalidInput", result
    assert result["field"] == field and message in result["message"]
    assert await stored_files(services, "tools") == []
    assert data(await gql('{ channel(name: "tools") { packageCount size } }'))["channel"] == {
        "packageCount": 0, "size": 0}


@pytest.mark.parametrize(
    ("filename", "body"),
    [("numpy-1.0-0.conda", b"PK\x03\x04 truncated"), ("numpy-1.0-0.tar.bz2", b"BZh9 junk"), ("numpy.conda", b"x")],
)
async def test_upload_refusals_match_the_rest_routes(
    people: People, make_channel: MakeChannel, upload: Upload, client: httpx2.AsyncClient, services: Services,
    filename: str, body: bytes,
) -> None:
    """GraphQL and the REST upload routes end in the same ingest function: same checks, same words."""
    await make_channel("tools", people.alice)
    rest = await client.post(f"/api/channels/tools/upload/{filename}", content=body, headers=people.alice.headers)
    assert rest.status_code == 422
    [result] = data((await upload("tools", [(filename, body)], people.alice)).json())["uploadPackages"]
    assert result["__typename"] == "InvalidInput"
    assert (result["message"], result["field"]) == (rest.json()["detail"], rest.json()["field"])
    assert await stored_files(services, "tools") == []


async def test_upload_rights(
    people: People, make_channel: MakeChannel, upload: Upload, tmp_path: Path, gql: Gql, services: Services
) -> None:
    await make_channel("tools", people.alice)
    await make_channel("hidden", people.alice, private=True)
    await set_member(gql, people.alice, "tools", people.bob, "MAINTAINER")
    await set_member(gql, people.alice, "tools", people.carol, "MEMBER")
    pkg = build_package(tmp_path, "numpy", "1.0", "0")
    files = [(pkg.name, pkg.read_bytes())]
    anonymous = await upload("tools", files, None)
    assert anonymous.status_code == 401  # refused before the body is read
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    cases = [
        (people.carol, "tools", "PermissionDenied"),  # channel members may read, not upload
        (people.bob, "hidden", "NotFound"),  # private: as if absent
        (people.bob, "nowhere", "NotFound"),
    ]
    for who, channel, typename in cases:
        [result] = data((await upload(channel, files, who)).json())["uploadPackages"]
        assert result["__typename"] == typename, (who, channel, result)
    assert await stored_files(services, "tools") == []
    [result] = data((await upload("tools", files, people.bob)).json())["uploadPackages"]
    assert result["__typename"] == "PackageFile"
    # The same file again: exists; force replaces it (channel maintainers may).
    [again] = data((await upload("tools", files, people.bob)).json())["uploadPackages"]
    assert again["__typename"] == "AlreadyExists" and "upload with force" in again["message"]
    [forced] = data((await upload("tools", files, people.bob, force=True)).json())["uploadPackages"]
    assert forced["__typename"] == "PackageFile"


async def test_mirror_channels_refuse_uploads(gql: Gql, people: People, upload: Upload, tmp_path: Path) -> None:
    data(await gql('mutation { createChannel(input: {name: "cf", mirrorMode: MIRROR, mirrorChannelUrl: '
                   '"https://conda.anaconda.org/conda-forge"}) { __typename } }', as_=people.staff))
    pkg = build_package(tmp_path, "numpy", "1.0", "0")
    [result] = data((await upload("cf", [(pkg.name, pkg.read_bytes())], people.staff)).json())["uploadPackages"]
    assert result["__typename"] == "Conflict" and "accepts no uploads" in result["message"]
    # Nor deletions: a typed Conflict too, not a bare GraphQL error.
    deleted = data(await gql(DELETE, {"channel": "cf", "subdir": "noarch", "filename": pkg.name},
                             as_=people.staff))["deletePackageFile"]
    assert deleted["__typename"] == "Conflict" and "mirror channel" in deleted["message"], deleted


async def test_one_bad_file_does_not_stop_the_others(
    people: People, make_channel: MakeChannel, upload: Upload, tmp_path: Path, services: Services
) -> None:
    await make_channel("tools", people.alice)
    good = build_package(tmp_path, "good", "1.0", "0")
    results = data((await upload("tools", [("bad-1.0-0.conda", b"junk"), (good.name, good.read_bytes())],
                                 people.alice)).json())["uploadPackages"]
    assert [r["__typename"] for r in results] == ["InvalidInput", "PackageFile"]
    assert await stored_files(services, "tools") == ["good-1.0-0.conda"]


async def test_delete_package_file(
    gql: Gql, people: People, make_channel: MakeChannel, ingest: Ingest, services: Services
) -> None:
    await make_channel("tools", people.alice)
    await set_member(gql, people.alice, "tools", people.carol, "MEMBER")
    await ingest("tools", people.alice, "numpy", "1.0")
    await ingest("tools", people.alice, "numpy", "2.0")
    target = {"channel": "tools", "subdir": "noarch", "filename": "numpy-2.0-0.conda"}
    cases = [
        (None, target, "PermissionDenied"),
        (people.bob, target, "PermissionDenied"),
        (people.carol, target, "PermissionDenied"),
        (people.alice, {**target, "filename": "numpy-3.0-0.conda"}, "NotFound"),
        (people.alice, {**target, "channel": "nope"}, "NotFound"),
        (people.alice, {**target, "filename": "../../numpy-2.0-0.conda"}, "InvalidInput"),
        (people.alice, {**target, "subdir": "../noarch"}, "InvalidInput"),
    ]
    for who, variables, typename in cases:
        result = data(await gql(DELETE, variables, as_=who))["deletePackageFile"]
        assert result["__typename"] == typename, (who, variables, result)
    assert await stored_files(services, "tools") == ["numpy-1.0-0.conda", "numpy-2.0-0.conda"]
    result = data(await gql(DELETE, target, as_=people.alice))["deletePackageFile"]
    assert result == {"__typename": "DeletedPackageFile", **target}
    assert await stored_files(services, "tools") == ["numpy-1.0-0.conda"]
    after = data(await gql('{ package(channel: "tools", name: "numpy") { latestVersion versions { totalCount } } }'))
    assert after["package"] == {"latestVersion": "1.0", "versions": {"totalCount": 1}}


async def test_channel_changes_reach_the_conda_routes_at_once(
    gql: Gql, people: People, make_channel: MakeChannel, ingest: Ingest, services: Services,
    client: httpx2.AsyncClient,
) -> None:
    from graphconda.services.publisher import wait_published

    await make_channel("tools", people.alice)
    await ingest("tools", people.alice, "numpy", "1.0")
    await wait_published(services)
    url = "/get/tools/noarch/repodata.json"
    assert "numpy-1.0-0.conda" in (await client.get(url)).json()["packages.conda"]
    hide = 'mutation { updateChannel(input: {name: "tools", private: true}) { __typename } }'
    assert data(await gql(hide, as_=people.alice))["updateChannel"]["__typename"] == "Channel"
    assert (await client.get(url)).status_code == 404
    assert (await client.get(url, headers=people.alice.headers)).status_code == 200
    delete = 'mutation { deleteChannel(name: "tools") { __typename } }'
    assert data(await gql(delete, as_=people.alice))["deleteChannel"]["__typename"] == "DeletedChannel"
    assert (await client.get(url, headers=people.alice.headers)).status_code == 404
    # A new channel of the same name starts empty, whatever was cached.
    await make_channel("tools", people.bob)
    assert (await client.get(url)).json()["packages.conda"] == {}


async def test_deleting_a_channel_removes_its_files(
    gql: Gql, people: People, make_channel: MakeChannel, ingest: Ingest, services: Services
) -> None:
    from graphconda.services.publisher import wait_published

    await make_channel("tools", people.alice)
    await make_channel("other", people.alice)
    await ingest("tools", people.alice, "numpy", "1.0")
    await ingest("other", people.alice, "numpy", "1.0")
    await wait_published(services)
    assert [b.key async for b in services.storage.list(layout.channel_prefix("tools"))]
    result = data(await gql('mutation { deleteChannel(name: "tools") { __typename } }', as_=people.alice))
    assert result["deleteChannel"]["__typename"] == "DeletedChannel"
    assert [b.key async for b in services.storage.list(layout.channel_prefix("tools"))] == []
    assert await stored_files(services, "other") == ["numpy-1.0-0.conda"]
    found = data(await gql('{ search(query: "numpy") { edges { node { channel { name } } } } }'))
    assert [e["node"]["channel"]["name"] for e in found["search"]["edges"]] == ["other"]


# --- malformed multipart requests -------------------------------------------------------------


def _operations(n: int = 1) -> str:
    return json.dumps({"query": "mutation($f: [Upload!]!) { uploadPackages(channel: \"tools\", files: $f) "
                                "{ __typename } }", "variables": {"f": [None] * n}})


@pytest.mark.parametrize(
    ("form", "files", "message"),
    [
        ({"operations": _operations(), "map": '{"0": ["variables.f.0"]}'}, {"9": b"x"}, "File(s) missing"),
        ({"operations": _operations(), "map": "not json"}, {"0": b"x"}, "JSON"),
        ({"operations": "not json", "map": '{"0": ["variables.f.0"]}'}, {"0": b"x"}, "JSON"),
        ({"operations": _operations(), "map": '["variables.f.0"]'}, {"0": b"x"}, "`map`"),
        ({"operations": _operations(), "map": '{"0": "variables.f.0"}'}, {"0": b"x"}, "list of paths"),
        ({"operations": _operations(), "map": '{"0": ["variables.f.7"]}'}, {"0": b"x"}, "not in `operations`"),
        ({"operations": _operations(), "map": '{"0": ["variables.nope.0"]}'}, {"0": b"x"}, "not in `operations`"),
        ({"operations": _operations(), "map": '{"0": ["variables.f.x"]}'}, {"0": b"x"}, "not in `operations`"),
        ({"operations": "[1, 2]", "map": '{"0": ["0.x"]}'}, {"0": b"x"}, "not in `operations`"),
        ({"operations": '"just a string"', "map": "{}"}, {"0": b"x"}, "`operations`"),
    ],
)
async def test_malformed_multipart_is_a_400(
    client: httpx2.AsyncClient, people: People, make_channel: MakeChannel, services: Services,
    form: dict[str, str], files: dict[str, bytes], message: str,
) -> None:
    await make_channel("tools", people.alice)
    response = await client.post(
        "/graphql", data=form, files={k: ("numpy-1.0-0.conda", v) for k, v in files.items()},
        headers=people.alice.headers,
    )
    assert response.status_code == 400, response.text
    assert message in response.text
    assert await stored_files(services, "tools") == []


async def test_broken_multipart_body_is_a_400(client: httpx2.AsyncClient, people: People) -> None:
    response = await client.post(
        "/graphql", content=b"--xyz\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{",
        headers={**people.alice.headers, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400


async def test_multipart_without_preflight_header_is_refused(
    client: httpx2.AsyncClient, people: People, make_channel: MakeChannel, tmp_path: Path, services: Services
) -> None:
    """A cross-site form can post multipart bodies; it cannot add headers without a CORS preflight."""
    await make_channel("tools", people.alice)
    pkg = build_package(tmp_path, "numpy", "1.0", "0")
    response = await client.post(
        "/graphql",
        data={"operations": _operations(), "map": '{"0": ["variables.f.0"]}'},
        files={"0": (pkg.name, pkg.read_bytes())},
    )
    assert response.status_code == 400
    assert "CSRF" in response.text
    assert await stored_files(services, "tools") == []


async def test_anonymous_multipart_is_refused_before_its_body_is_read(
    client: httpx2.AsyncClient, people: People, make_channel: MakeChannel, services: Services
) -> None:
    """Uploads need a caller: an anonymous multipart body (preflight header or not) is not spooled."""
    await make_channel("tools", people.alice)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n' + _operations().encode()
        for _ in range(64):
            sent += 1
            yield b"\0" * 65536

    response = await client.post("/graphql", content=body(), headers={
        "Content-Type": "multipart/form-data; boundary=b", "GraphQL-Require-Preflight": "1"})
    assert response.status_code == 401
    assert "log in" in response.json()["errors"][0]["message"]
    assert sent < 64
    assert await stored_files(services, "tools") == []


async def test_a_string_where_a_file_belongs(gql: Gql, people: People, make_channel: MakeChannel) -> None:
    await make_channel("tools", people.alice)
    result = await gql('mutation { uploadPackages(channel: "tools", files: ["numpy-1.0-0.conda"]) '
                       "{ __typename ... on InvalidInput { field } } }", as_=people.alice)
    assert data(result)["uploadPackages"] == [{"__typename": "InvalidInput", "field": "files"}]


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize("settings_overrides", [{"limits": {"max_upload_bytes": 2000}}], indirect=True)
async def test_oversized_multipart_body_is_a_413(
    people: People, make_channel: MakeChannel, upload: Upload, services: Services
) -> None:
    await make_channel("tools", people.alice)
    response = await upload("tools", [("numpy-1.0-0.conda", b"x" * 5000)], people.alice)
    assert response.status_code == 413
    assert await stored_files(services, "tools") == []


async def test_upload_packages_checks_each_file_and_commits_the_good_ones_together(
    people: People, make_channel: MakeChannel, upload: Upload, tmp_path: Path, services: Services
) -> None:
    """A bad file gets its own error while the others are stored; those are committed in one batch:
    the subdir's shard index is written once for the request, not once per file."""
    from graphconda.services import publishing

    await make_channel("tools", people.alice)
    good = [build_package(tmp_path / str(i), f"pkg{i}", "1.0", "0") for i in range(4)]
    written: list[str] = []
    publishing.add_listener(services, written.extend)
    files = [(good[0].name, good[0].read_bytes()), ("bad-1.0-0.conda", b"not a package"),
             *[(p.name, p.read_bytes()) for p in good[1:]], (good[1].name, good[1].read_bytes())]
    results = data((await upload("tools", files, people.alice)).json())["uploadPackages"]
    assert [r["__typename"] for r in results] == ["PackageFile", "InvalidInput", "PackageFile", "PackageFile",
                                                  "PackageFile", "InvalidInput"]
    assert "twice" in results[-1]["message"]
    assert await stored_files(services, "tools") == sorted(p.name for p in good)
    assert [k for k in written if k.endswith("repodata_shards.msgpack.zst")] == \
        ["channels/tools/noarch/repodata_shards.msgpack.zst"]
