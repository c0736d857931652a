"""Channel publishing options (services/channel_options.py via channels.create/update_channel), as clients see them."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import httpx2
import pytest

from graphconda.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from graphconda.services import channels, packages
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.channels import ChannelSpec, ChannelUpdate
from graphconda.services.context import Services
from graphconda.services.publisher import wait_published
from graphconda.services.publishing import options_of
from tests.helpers.channels import add_member, chunks, make_user, read_blob, shard, shard_index
from tests.helpers.packages import build_package

SUBDIR_KEY = "channels/{c}/{s}/{f}"


async def upload(services: Services, channel: str, path: Path) -> None:
    await packages.ingest_package(services, SYSTEM, channel, path.name, chunks(path))


async def stored(services: Services, channel: str, subdir: str, name: str) -> bytes | None:
    await wait_published(services)
    return await read_blob(services, SUBDIR_KEY.format(c=channel, s=subdir, f=name))


async def get(client: httpx2.AsyncClient, channel: str, subdir: str, name: str) -> httpx2.Response:
    return await client.get(f"/get/{channel}/{subdir}/{name}")


def assert_short_404(response: httpx2.Response) -> None:
    assert response.status_code == 404
    control = response.headers["cache-control"]
    assert "max-age=" in control and int(control.rsplit("max-age=", 1)[1]) <= 60, control


async def test_create_stores_options_and_defaults_follow_the_server(services: Services) -> None:
    plain = await channels.create_channel(services, SYSTEM, ChannelSpec("plain"))
    assert options_of(services.settings, plain.options) == options_of(services.settings, {})
    assert (options_of(services.settings, plain.options).bz2, plain.options) == (False, {"bz2": False,
                                                                                          "current_repodata": False})
    made = await channels.create_channel(services, SYSTEM, ChannelSpec(
        "opts", publish_bz2=True, publish_current_repodata=True, publish_shards=False))
    assert made.options == {"bz2": True, "current_repodata": True, "shards": False}
    [listed] = [c for c in await channels.list_channels(services, SYSTEM) if c.name == "opts"]
    assert listed.options == made.options


@pytest.mark.parametrize("bad", [{"publish_bz2": "yes"}, {"publish_current_repodata": 1}, {"publish_shards": "off"}])
async def test_non_boolean_options_are_refused_without_change(services: Services, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await channels.create_channel(services, SYSTEM, ChannelSpec("x", **bad))  # type: ignore[arg-type]
    assert caught.value.field and caught.value.field.startswith("publish")
    assert await channels.list_channels(services, SYSTEM) == []
    await channels.create_channel(services, SYSTEM, ChannelSpec("y"))
    with pytest.raises(InvalidInputError):
        await channels.update_channel(services, SYSTEM, "y", ChannelUpdate(description="changed", **bad))  # type: ignore[arg-type]
    [y] = await channels.list_channels(services, SYSTEM)
    assert (y.description, y.options) == ("", {"bz2": False, "current_repodata": False})


async def test_bz2_appears_with_the_same_content_and_disappears(services: Services, client: httpx2.AsyncClient,
                                                                tmp_path: Path) -> None:
    await channels.create_channel(services, SYSTEM, ChannelSpec("c"))
    await upload(services, "c", build_package(tmp_path, "foo", "1.0", "0", subdir="linux-64"))
    assert await stored(services, "c", "linux-64", "repodata.json.bz2") is None
    assert_short_404(await get(client, "c", "linux-64", "repodata.json.bz2"))

    await channels.update_channel(services, SYSTEM, "c", ChannelUpdate(publish_bz2=True))
    for subdir in ("linux-64", "noarch"):  # every subdir, noarch too
        served = await get(client, "c", subdir, "repodata.json.bz2")
        assert served.status_code == 200, subdir
        plain = await get(client, "c", subdir, "repodata.json")
        assert bz2.decompress(served.content) == plain.content
    assert "foo-1.0-0.conda" in json.loads(bz2.decompress((await get(client, "c", "linux-64",
                                                                      "repodata.json.bz2")).content))["packages.conda"]
    # Later uploads keep it current.
    await upload(services, "c", build_package(tmp_path, "bar", "1.0", "0", subdir="linux-64"))
    await wait_published(services)
    served = await get(client, "c", "linux-64", "repodata.json.bz2")
    assert bz2.decompress(served.content) == (await get(client, "c", "linux-64", "repodata.json")).content
    assert "bar-1.0-0.conda" in json.loads(bz2.decompress(served.content))["packages.conda"]

    await channels.update_channel(services, SYSTEM, "c", ChannelUpdate(publish_bz2=False))
    assert await stored(services, "c", "linux-64", "repodata.json.bz2") is None
    assert_short_404(await get(client, "c", "linux-64", "repodata.json.bz2"))
    assert (await get(client, "c", "linux-64", "repodata.json")).status_code == 200


async def test_current_repodata_appears_and_disappears(services: Services, client: httpx2.AsyncClient,
                                                       tmp_path: Path) -> None:
    await channels.create_channel(services, SYSTEM, ChannelSpec("c"))
    await upload(services, "c", build_package(tmp_path, "foo", "1.0", "0"))
    await upload(services, "c", build_package(tmp_path, "foo", "2.0", "0"))
    assert_short_404(await get(client, "c", "noarch", "current_repodata.json"))
    updated = await channels.update_channel(services, SYSTEM, "c", ChannelUpdate(publish_current_repodata=True))
    assert updated.options["current_repodata"] is True
    served = await get(client, "c", "noarch", "current_repodata.json")
    assert served.status_code == 200
    doc = served.json()
    assert doc["info"]["subdir"] == "noarch"
    assert set(doc["packages.conda"]) == {"foo-2.0-0.conda"}  # the latest version only
    await channels.update_channel(services, SYSTEM, "c", ChannelUpdate(publish_current_repodata=False))
    assert await stored(services, "c", "noarch", "current_repodata.json") is None
    assert_short_404(await get(client, "c", "noarch", "current_repodata.json"))


async def test_shards_off_removes_the_index_and_on_rebuilds_it(services: Services, client: httpx2.AsyncClient,
                                                               tmp_path: Path) -> None:
    await channels.create_channel(services, SYSTEM, ChannelSpec("c", publish_shards=True))
    await upload(services, "c", build_package(tmp_path, "foo", "1.0", "0", subdir="linux-64"))
    assert (await get(client, "c", "linux-64", "repodata_shards.msgpack.zst")).status_code == 200

    await channels.update_channel(services, SYSTEM, "c", ChannelUpdate(publish_shards=False))
    assert await shard_index(services, "c", "linux-64") is None
    assert_short_404(await get(client, "c", "linux-64", "repodata_shards.msgpack.zst"))
    assert_short_404(await get(client, "c", "noarch", "repodata_shards.msgpack.zst"))
    # Clients fall back to the monolithic files, which stay.
    assert (await get(client, "c", "linux-64", "repodata.json.zst")).status_code == 200
    # An upload while shards are off: still no index served.
    await upload(services, "c", build_package(tmp_path, "bar", "1.0", "0", subdir="linux-64"))
    assert_short_404(await get(client, "c", "linux-64", "repodata_shards.msgpack.zst"))

    await channels.update_channel(services, SYSTEM, "c", ChannelUpdate(publish_shards=True))
    index = await shard_index(services, "c", "linux-64")
    assert index is not None and set(index["shards"]) == {"foo", "bar"}
    for name, digest in index["shards"].items():  # every shard the index names exists
        assert set((await shard(services, "c", "linux-64", digest))["packages.conda"]) == {f"{name}-1.0-0.conda"}
    served = await get(client, "c", "linux-64", "repodata_shards.msgpack.zst")
    assert served.status_code == 200
    assert (await get(client, "c", "noarch", "repodata_shards.msgpack.zst")).status_code == 200


async def test_only_maintainers_change_options_and_outsiders_learn_nothing(services: Services, tmp_path: Path) -> None:
    alice = await make_user(services, "alice")
    bob = await make_user(services, "bob")
    carol = await make_user(services, "carol")
    await channels.create_channel(services, alice, ChannelSpec("tools"))
    await channels.create_channel(services, alice, ChannelSpec("hidden", private=True))
    await add_member(services, "tools", bob, Role.MEMBER)
    await add_member(services, "hidden", carol, Role.MAINTAINER)
    await upload(services, "tools", build_package(tmp_path, "foo", "1.0", "0"))
    on = ChannelUpdate(publish_bz2=True, publish_shards=False)
    with pytest.raises(PermissionDeniedError):
        await channels.update_channel(services, bob, "tools", on)
    with pytest.raises(NotFoundError):
        await channels.update_channel(services, bob, "hidden", on)
    assert await stored(services, "tools", "noarch", "repodata.json.bz2") is None
    assert await shard_index(services, "tools", "noarch") is not None
    [tools, *_] = [c for c in await channels.list_channels(services, alice) if c.name == "tools"]
    assert tools.options == {"bz2": False, "current_repodata": False}
    # Maintainers may.
    changed = await channels.update_channel(services, carol, "hidden", on)
    assert changed.options == {"bz2": True, "current_repodata": False, "shards": False}
