"""Hostile uploads over HTTP: out-of-range numbers, NULs and lone surrogates in metadata, repeated
filenames in one request, decompression and member-count bombs, member paths outside the install
prefix. Each is refused with a 4xx naming the problem, on SQLite and PostgreSQL alike, and leaves
nothing behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from graphconda.services.context import Services
from tests.helpers.channels import (
    leftover_temp_files,
    make_channel,
    owner_key_for_main,
    package_files,
    repodata,
    snapshot,
)
from tests.helpers.packages import (
    build_many_members_conda,
    build_package,
    build_raw_package,
    build_zeros_bomb,
    file_member,
    symlink_member,
)

INT64_MAX = 2**63 - 1


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"limits": {"allow_unsafe_paths_channels": ["legacy"]}}


@pytest.fixture
async def owner_key(services: Services) -> str:
    await make_channel(services, "legacy")
    return await owner_key_for_main(services)


async def upload(client: httpx2.AsyncClient, key: str, path: Path, channel: str = "main") -> httpx2.Response:
    body = await anyio.Path(path).read_bytes()
    return await client.post(f"/api/channels/{channel}/upload/{path.name}", content=body,
                             headers={"X-API-Key": key})


# name -> (build_package keyword arguments, words the refusal must contain)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "build_number 2^63": ({"build_number": 2**63}, "'build_number' must be an integer from 0 to 9223372036854775807"),
    "build_number 2^64": ({"build_number": 2**64}, "'build_number' must be an integer from 0 to 9223372036854775807"),
    "negative build_number": ({"build_number": -1}, "'build_number' must be an integer from 0"),
    "timestamp 2^63": ({"timestamp": 2**63}, "'timestamp' must be an integer from 0 to 9223372036854775807"),
    "huge integer elsewhere in index.json": ({"index_overrides": {"extra_number": 2**64}},
                                             "info/index.json extra_number is an integer outside"),
    "NUL in about.json summary": ({"about": {"summary": "nice\x00evil"}},
                                  "info/about.json summary contains a NUL character"),
    "NUL in nested about.json": ({"about": {"summary": "s", "extra": {"maintainers": ["a", "b\x00"]}}},
                                 "info/about.json extra.maintainers[1] contains a NUL character"),
    "NUL in an about.json key": ({"about": {"summary": "s", "bad\x00key": "x"}},
                                 "info/about.json has a key containing a NUL character"),
    "lone surrogate in about.json": ({"about": {"summary": "before \ud800 after"}},
                                     "info/about.json summary contains a lone surrogate"),
    "lone surrogate in about.json home": ({"about": {"home": "https://example.org/\udfff"}},
                                          "info/about.json home contains a lone surrogate"),
    "NUL in depends": ({"depends": ["python", "numpy\x00>=1"]}, "info/index.json depends[1] contains a NUL character"),
    "NUL in license": ({"index_overrides": {"license": "MIT\x00"}}, "info/index.json license contains a NUL"),
    "lone surrogate in constrains": ({"constrains": ["foo \ud83d"]},
                                     "info/index.json constrains[0] contains a lone surrogate"),
    "NUL in run_exports": ({"run_exports": {"weak": ["alpha\x00"]}},
                           "info/run_exports.json weak[0] contains a NUL character"),
}


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
@pytest.mark.parametrize("case", list(REFUSED))
async def test_hostile_metadata_is_refused_with_the_field_named(
    case: str, fmt: str, client: httpx2.AsyncClient, owner_key: str, tmp_path: Path, services: Services
) -> None:
    kwargs, words = REFUSED[case]
    path = build_package(tmp_path, "alpha", fmt=fmt, **kwargs)
    before = await snapshot(services)
    response = await upload(client, owner_key, path)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"], response.text
    assert path.name in response.json()["detail"]
    assert await snapshot(services) == before
    assert not leftover_temp_files(services)


async def test_largest_build_number_and_unicode_text_are_stored(
    client: httpx2.AsyncClient, owner_key: str, tmp_path: Path, services: Services
) -> None:
    """What fits is kept exactly: int64's largest build number, a 2100 timestamp, emoji (a surrogate pair in
    JSON), accents."""
    about = {"summary": "caf\u00e9 \U0001f40d", "description": "line\ttab"}
    path = build_package(tmp_path, "alpha", build_number=INT64_MAX, timestamp=4_102_444_800_000, about=about)
    response = await upload(client, owner_key, path)
    assert response.status_code == 201, response.text
    assert response.json()["build_number"] == INT64_MAX
    (row,) = await package_files(services)
    assert row.build_number == INT64_MAX and row.timestamp == 4_102_444_800_000
    found = await client.post("/graphql", json={"query": '{ package(channel: "main", name: "alpha") { summary } }'})
    assert found.json()["data"]["package"]["summary"] == "caf\u00e9 \U0001f40d", found.text


# --- all or nothing: one request, several files ---------------------------------------------


async def test_multipart_with_a_repeated_filename_stores_nothing(
    client: httpx2.AsyncClient, owner_key: str, tmp_path: Path, services: Services
) -> None:
    alpha = build_package(tmp_path / "a", "alpha")
    beta = build_package(tmp_path / "b", "beta")
    other_beta = build_package(tmp_path / "c", "beta", files={"share/other": b"other"})
    before = await snapshot(services)
    for force in ("false", "true"):
        files = [("files", (alpha.name, alpha.read_bytes())), ("files", (beta.name, beta.read_bytes())),
                 ("files", (other_beta.name, other_beta.read_bytes()))]
        response = await client.post("/api/channels/main/files", files=files, data={"force": force},
                                     headers={"X-API-Key": owner_key})
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == "beta-1.0-0.conda is sent twice in one request; send each file once"
        assert await snapshot(services) == before
        assert not leftover_temp_files(services)


# --- bombs: the work per upload is bounded -------------------------------------------------


@pytest.mark.parametrize("kind", ["1.1 GB of zeros in a .tar.bz2", "200,000 members in a .conda",
                                  "200,000 members in a .conda's info"])
async def test_bombs_are_refused_quickly(kind: str, client: httpx2.AsyncClient, owner_key: str, tmp_path: Path,
                                         services: Services) -> None:
    if kind.startswith("1.1 GB"):
        path = build_zeros_bomb(tmp_path, "alpha", 1100 * 1024 * 1024)
        words = "alpha-1.0-0.tar.bz2 expands to more than 16777216 bytes"
    else:
        path = build_many_members_conda(tmp_path, "alpha", 200_000, component="info" if "info" in kind else "pkg")
        words = "alpha-1.0-0.conda has more than"
    assert path.stat().st_size < 400_000
    before = await snapshot(services)
    for multipart in (False, True):
        # CPU time of this process (the app runs in it): what the upload costs the server, whatever
        # else the machine running the tests is doing. Well under a second on an idle machine.
        cpu, wall = time.process_time(), time.monotonic()
        if multipart:
            body = await anyio.Path(path).read_bytes()
            response = await client.post("/api/channels/main/files", files=[("files", (path.name, body))],
                                         headers={"X-API-Key": owner_key})
        else:
            response = await upload(client, owner_key, path)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        assert response.status_code == 413, response.text
        assert words in response.json()["detail"], response.text
        assert cpu < 2, f"refusing {kind} cost {cpu:.1f} s of CPU"
        assert wall < 15, f"refusing {kind} took {wall:.1f} s"
    assert await snapshot(services) == before
    assert not leftover_temp_files(services)


# --- member paths outside the install prefix ------------------------------------------------

# name -> (payload members, paths.json entries (None: the members' names), the member named)
ESCAPES: dict[str, tuple[list[Any], list[str] | None, str]] = {
    "dot-dot": ([file_member("../../../../tmp/pwned")], None, "member '../../../../tmp/pwned'"),
    "absolute": ([file_member("/etc/cron.d/evil")], None, "member '/etc/cron.d/evil'"),
    "symlink to /etc/shadow": ([symlink_member("share/alpha/shadow", "/etc/shadow")], None,
                               "member 'share/alpha/shadow' would land outside the install prefix (symlink to "
                               "the absolute path '/etc/shadow')"),
    "paths.json only": ([file_member("share/alpha/ok")], ["../../../../tmp/pwned"],
                        "info/paths.json lists '../../../../tmp/pwned'"),
}


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
@pytest.mark.parametrize("case", list(ESCAPES))
async def test_paths_outside_the_prefix_are_refused_unless_the_channel_allows_them(
    case: str, fmt: str, client: httpx2.AsyncClient, owner_key: str, tmp_path: Path, services: Services
) -> None:
    members, paths, words = ESCAPES[case]
    path = build_raw_package(tmp_path, "alpha", members, fmt=fmt, paths=paths)
    before = await snapshot(services)
    response = await upload(client, owner_key, path)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"], response.text
    assert await snapshot(services) == before
    allowed = await upload(client, owner_key, path, channel="legacy")
    assert allowed.status_code == 201, allowed.text
    published = await repodata(services, "legacy", "noarch")
    assert published is not None and path.name in {**published["packages"], **published["packages.conda"]}
    assert not leftover_temp_files(services)
