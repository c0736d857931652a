"""quetz-client 0.5 (PyPI) end to end against a live server: every command it has.

Its dataclasses are built from the JSON with exactly Quetz's fields (`Channel(**json)`,
dacite for members), so an extra or a missing field fails here.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import requests
from quetz_client.client import QuetzClient
from sqlalchemy import select

from graphconda.db.models import Channel, JobRun
from graphconda.services import api_keys
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.helpers.channels import make_user
from tests.helpers.packages import build_package

pytestmark = pytest.mark.slow


async def test_every_quetz_client_command(live_server: LiveServer, services: Services, tmp_path: Path) -> None:
    admin = await make_user(services, "admin", Role.OWNER)
    await make_user(services, "bob")
    _, key = await api_keys.create_api_key(services, admin)
    client = QuetzClient.from_token(live_server.url, key)
    package = build_package(tmp_path, "hello", "1.0", "0", subdir="linux-64", about={"summary": "Says hello"})

    def scenario() -> None:
        client.set_channel("qc-channel", private=False, description="from quetz-client")
        client.set_channel("qc-mirror", private=False, mirror_channel_url="http://127.0.0.1:9/get/none",
                           mirror_mode="mirror", actions=[], metadata={"proxylist": ["cudnn"]})
        channels = {c.name: c for c in client.yield_channels(limit=1)}  # pages of one
        assert set(channels) == {"qc-channel", "qc-mirror"}
        assert channels["qc-channel"].description == "from quetz-client" and channels["qc-channel"].members_count == 1
        assert channels["qc-mirror"].mirror_mode == "mirror"
        assert [c.name for c in client.yield_channels(query="mirr")] == ["qc-mirror"]
        client.post_file_to_channel("qc-channel", package)
        with pytest.raises(requests.HTTPError) as refused:
            client.post_file_to_channel("qc-channel", package)
        assert refused.value.response.status_code == 409
        client.post_file_to_channel("qc-channel", package, force=True)
        packages = list(client.yield_packages("qc-channel"))
        assert [(p.name, p.platforms, p.current_version, p.summary) for p in packages] == [
            ("hello", ["linux-64"], "1.0", "Says hello")]
        assert list(client.yield_packages("qc-channel", query="nothing")) == []
        assert [p.name for p in client.yield_packages("qc-channel", order_by="name:desc")] == ["hello"]
        assert sorted(u.username for u in client.yield_users(limit=1)) == ["admin", "bob"]
        assert [u.username for u in client.yield_users(query="bo")] == ["bob"]
        assert [r.role for r in client.get_role("admin")] == ["owner"]
        client.set_role("bob", "maintainer")
        assert [r.role for r in client.get_role("bob")] == ["maintainer"]
        client.set_role("bob", None)
        assert [r.role for r in client.get_role("bob")] == [None]
        client.set_channel_member("bob", "member", "qc-channel")
        members = {m.user.username: m.role for m in client.yield_channel_members("qc-channel")}
        assert members == {"admin": "owner", "bob": "member"}
        client.delete_channel_member("bob", "qc-channel")
        assert [m.user.username for m in client.yield_channel_members("qc-channel")] == ["admin"]
        with pytest.raises(requests.HTTPError):
            client.delete_channel_member("bob", "qc-channel")
        client.delete_channel("qc-mirror")
        assert [c.name for c in client.yield_channels()] == ["qc-channel"]
        with pytest.raises(requests.HTTPError) as missing:
            client.delete_channel("qc-mirror")
        assert missing.value.response.status_code == 404
        anonymous = QuetzClient(requests.Session(), live_server.url)
        with pytest.raises(requests.HTTPError) as anon:
            anonymous.set_role("admin", None)
        assert anon.value.response.status_code == 401

    await anyio.to_thread.run_sync(scenario)
    async with services.db.read() as session:
        names = list(await session.scalars(select(Channel.name)))
        jobs = list(await session.scalars(select(JobRun.kind)))
    assert names == ["qc-channel"] and jobs == []  # `actions: []`: the mirror queued no sync
