"""Mirror and proxy channel settings over GraphQL: who may set them, what is refused, what is shown."""

from __future__ import annotations

from typing import Any

from graphconda.services import channels
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from tests.schema.conftest import Gql, People, data

CREATE = """
mutation($input: CreateChannelInput!) {
  createChannel(input: $input) {
    __typename
    ... on Channel { name mirrorMode includelist excludelist proxylist mirror { mode upstreamUrl ttl prune } }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""

UPDATE = """
mutation($input: UpdateChannelInput!) {
  updateChannel(input: $input) {
    __typename
    ... on Channel { name mirror { ttl prune } }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""


async def test_staff_create_a_proxy_with_lists_and_ttl(gql: Gql, people: People) -> None:
    spec = {"name": "cf", "mirrorMode": "PROXY", "mirrorChannelUrl": "https://conda.example.org/cf",
            "includelist": ["numpy", "python 3.12.*"], "proxylist": ["big"], "ttl": 30}
    result = data(await gql(CREATE, {"input": spec}, as_=people.staff))["createChannel"]
    assert result == {"__typename": "Channel", "name": "cf", "mirrorMode": "PROXY",
                      "includelist": ["numpy", "python 3.12.*"], "excludelist": [], "proxylist": ["big"],
                      "mirror": {"mode": "PROXY", "upstreamUrl": "https://conda.example.org/cf", "ttl": 30,
                                 "prune": False}}
    updated = data(await gql(UPDATE, {"input": {"name": "cf", "ttl": 0, "mirrorPrune": True}}, as_=people.staff))
    assert updated["updateChannel"]["mirror"] == {"ttl": 0, "prune": True}
    # The server default when none is given.
    spec = {"name": "cf2", "mirrorMode": "PROXY", "mirrorChannelUrl": "https://conda.example.org/cf"}
    assert data(await gql(CREATE, {"input": spec}, as_=people.staff))["createChannel"]["mirror"]["ttl"] == 300


async def test_refused_settings(gql: Gql, people: People) -> None:
    url = "https://conda.example.org/cf"
    both = {"name": "m", "mirrorMode": "MIRROR", "mirrorChannelUrl": url, "includelist": ["a"], "excludelist": ["b"]}
    result = data(await gql(CREATE, {"input": both}, as_=people.staff))["createChannel"]
    assert result["__typename"] == "InvalidInput" and result["field"] == "input.excludelist"
    bad_ttl = {"name": "m", "mirrorMode": "PROXY", "mirrorChannelUrl": url, "ttl": -1}
    result = data(await gql(CREATE, {"input": bad_ttl}, as_=people.staff))["createChannel"]
    assert result["__typename"] == "InvalidInput" and result["field"] == "input.ttl"
    # Mirror settings are server staff's, on create and on update.
    proxy = {"name": "m", "mirrorMode": "PROXY", "mirrorChannelUrl": url}
    assert data(await gql(CREATE, {"input": proxy}, as_=people.alice))["createChannel"]["__typename"] == \
        "PermissionDenied"
    assert data(await gql(CREATE, {"input": {"name": "own"}}, as_=people.alice))["createChannel"]["__typename"] == \
        "Channel"
    result = data(await gql(UPDATE, {"input": {"name": "own", "ttl": 5}}, as_=people.alice))["updateChannel"]
    assert result["__typename"] == "PermissionDenied"
    result = data(await gql(CREATE, {"input": {"name": "own2", "includelist": ["x"]}}, as_=people.alice))
    assert result["createChannel"]["__typename"] == "PermissionDenied"
    # Nothing was created by the refusals.
    found = data(await gql("{ channels { edges { node { name } } } }", as_=people.staff))["channels"]["edges"]
    assert [e["node"]["name"] for e in found] == ["own"]


async def test_upstream_credentials_are_shown_to_server_staff_only(gql: Gql, people: People,
                                                                   services: Services) -> None:
    await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name="tok", mirror_mode="proxy", mirror_channel_url="https://conda.example.org/t/tk-secret-1/cf"))
    await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name="basic", mirror_mode="mirror", mirror_channel_url="https://user:pw-secret@conda.example.org/cf"))
    query = '{ channels { edges { node { name mirrorChannelUrl mirror { upstreamUrl } } } } }'
    for who in (None, people.alice):
        nodes = {e["node"]["name"]: e["node"] for e in data(await gql(query, as_=who))["channels"]["edges"]}
        assert nodes["tok"]["mirrorChannelUrl"] == "https://conda.example.org/t/***/cf"
        assert nodes["basic"]["mirror"]["upstreamUrl"] == "https://***@conda.example.org/cf"
    nodes = {e["node"]["name"]: e["node"] for e in data(await gql(query, as_=people.staff))["channels"]["edges"]}
    assert nodes["tok"]["mirrorChannelUrl"] == "https://conda.example.org/t/tk-secret-1/cf"
    assert nodes["basic"]["mirror"]["upstreamUrl"] == "https://user:pw-secret@conda.example.org/cf"


SYNC = """
mutation($input: SyncMirrorInput!) {
  syncMirror(input: $input) {
    __typename
    ... on Job { id kind status channel { name } }
    ... on Error { message }
  }
}"""

STATUS = """{ channel(name: "mir") { mirror { mode lastSyncAt lastSuccessAt filesMirrored bytesMirrored lastError
  lastJob { kind status } } } }"""


async def test_sync_mirror_and_its_status(gql: Gql, people: People, services: Services, tmp_path: Any) -> None:
    from graphconda.services import job_queries
    from tests.fixtures.upstreams import serve_channel
    from tests.helpers.jobs import run_to_end
    from tests.helpers.packages import build_package

    async with serve_channel(tmp_path / "upstream", [build_package(tmp_path / "b", "alpha", "1.0", "0")]) as upstream:
        spec = {"name": "mir", "mirrorMode": "MIRROR", "mirrorChannelUrl": upstream.url, "syncNow": False}
        assert data(await gql(CREATE, {"input": spec}, as_=people.staff))["createChannel"]["__typename"] == "Channel"
        status = data(await gql(STATUS))["channel"]["mirror"]
        assert status == {"mode": "MIRROR", "lastSyncAt": None, "lastSuccessAt": None, "filesMirrored": 0,
                          "bytesMirrored": 0, "lastError": "", "lastJob": None}
        # Who may start it, and on what.
        assert data(await gql(SYNC, {"input": {"channel": "mir"}}, as_=people.alice))["syncMirror"]["__typename"] \
            == "PermissionDenied"
        assert data(await gql(CREATE, {"input": {"name": "plain"}}, as_=people.alice))
        plain = data(await gql(SYNC, {"input": {"channel": "plain"}}, as_=people.alice))["syncMirror"]
        assert plain == {"__typename": "Conflict",
                         "message": "channel 'plain' is a local channel; it accepts no synchronisation"}
        started = data(await gql(SYNC, {"input": {"channel": "mir", "mode": "SYNCHRONIZE_REPODATA"}},
                                 as_=people.staff))["syncMirror"]
        assert started["__typename"] == "Job" and started["kind"] == "synchronize_repodata"
        assert started["status"] == "QUEUED" and started["channel"] == {"name": "mir"}
        again = data(await gql(SYNC, {"input": {"channel": "mir", "mode": "SYNCHRONIZE_REPODATA"}},
                               as_=people.staff))["syncMirror"]
        assert again["id"] == started["id"]  # one at a time
        await run_to_end(services, job_queries.parse_job_id(started["id"]) or 0, seconds=30)
        status = data(await gql(STATUS, as_=people.staff))["channel"]["mirror"]
        assert status["filesMirrored"] == 1 and status["bytesMirrored"] > 0 and status["lastError"] == ""
        assert status["lastSyncAt"] and status["lastSuccessAt"] == status["lastSyncAt"]
        assert status["lastJob"] == {"kind": "synchronize_repodata", "status": "SUCCEEDED"}
        # Job details are for those who may see the channel's jobs: others see the rest, not the run.
        for viewer in (None, people.alice):
            seen = data(await gql(STATUS, as_=viewer))["channel"]["mirror"]
            assert seen == {**status, "lastJob": None}, viewer
