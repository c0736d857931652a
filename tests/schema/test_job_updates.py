"""Live job progress: the per-process JobWatcher, and `jobUpdates` over a real graphql-transport-ws websocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from graphconda.db.models import JobRun
from graphconda.jobs.runner import Runner
from graphconda.services import channels, jobs, users
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from graphconda.services.job_watcher import JobWatcher
from tests.helpers.channels import add_member, make_channel
from tests.helpers.sql import count_statements
from tests.schema.conftest import Gql, People, Person, data, set_member


async def update_run(services: Services, job_id: int, **values: Any) -> None:
    """Write a run's row as a runner in another process would."""
    async with services.db.write() as session:
        run = await session.get(JobRun, job_id)
        assert run is not None
        for key, value in values.items():
            setattr(run, key, value)


async def queued(services: Services, channel: str) -> JobRun:
    return await jobs.run_job(services, SYSTEM, "reindex", channel=channel)


async def take(stream: AsyncIterator[JobRun]) -> JobRun:
    return await asyncio.wait_for(anext(stream), timeout=10)


async def test_one_query_per_tick_for_every_subscriber(services: Services) -> None:
    await make_channel(services, "a")
    await make_channel(services, "b")
    first, second = await queued(services, "a"), await queued(services, "b")
    watcher = JobWatcher(services, interval=3600)  # ticks driven by hand below
    streams = [watcher.watch(run) for run in (first, second) for _ in range(5)]
    pending = [asyncio.ensure_future(anext(s)) for s in streams]  # ten subscribers, two runs
    await asyncio.sleep(0)
    assert watcher.watched_ids == sorted([first.id, second.id])  # type: ignore[type-var]
    await update_run(services, first.id, status="running", progress_done=1, progress_total=4)  # type: ignore[arg-type]
    with count_statements(services) as seen:
        await watcher.poll_once()
    assert len([s for s in seen if "job_runs" in s]) == 1, [s[:30] for s in seen]
    updates = await asyncio.wait_for(asyncio.gather(*pending[:5]), timeout=10)
    assert {(u.status, u.progress_done) for u in updates} == {("running", 1)}
    assert not any(p.done() for p in pending[5:])  # nothing changed for the second run
    await update_run(services, second.id, status="succeeded", active_key=None)  # type: ignore[arg-type]
    await watcher.poll_once()
    finals = await asyncio.wait_for(asyncio.gather(*pending[5:]), timeout=10)
    assert {u.status for u in finals} == {"succeeded"}
    for stream in streams[5:]:  # a finished run ends its streams
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
    assert watcher.watched_ids == [first.id]
    for stream in streams[:5]:
        await stream.aclose()
    assert watcher.watched_ids == []
    await watcher.aclose()


async def test_the_watcher_polls_by_itself_and_stops_when_nobody_watches(services: Services) -> None:
    await make_channel(services, "a")
    run = await queued(services, "a")
    watcher = JobWatcher(services, interval=0.05)
    stream = watcher.watch(run)
    next_state = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)
    assert not next_state.done()  # no change, no message
    await update_run(services, run.id, status="running")  # type: ignore[arg-type]
    assert (await asyncio.wait_for(next_state, timeout=10)).status == "running"
    await update_run(services, run.id, status="failed", error="boom", active_key=None)  # type: ignore[arg-type]
    final = await take(stream)
    assert (final.status, final.error) == ("failed", "boom")
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    task = watcher._task
    assert task is not None
    await asyncio.wait_for(task, timeout=10)  # nothing watched: the polling task ends
    await watcher.aclose()


async def test_a_deleted_run_ends_the_stream(services: Services) -> None:
    await make_channel(services, "gone")
    run = await queued(services, "gone")
    watcher = JobWatcher(services, interval=0.05)
    stream = watcher.watch(run)
    await channels.delete_channel(services, SYSTEM, "gone")  # cascades to its runs
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), timeout=10)
    await watcher.aclose()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Runs are executed by a Runner each test starts itself (a process of its own, as far as the server knows)."""
    return {"jobs": {"embedded_runner": False, "embedded_scheduler": False, "modules": ["tests.jobs.kinds"],
                     "heartbeat_seconds": 0.5, "stale_seconds": 30}}


# --- over a real websocket --------------------------------------------------------------

UPDATES = """
subscription($id: ID!) {
  jobUpdates(id: $id) { id status progress { done total message } channel { name } error }
}"""


class Socket:
    """A graphql-transport-ws client session."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout=20))

    async def subscribe(self, op_id: str, job_id: str) -> None:
        await self.send({"id": op_id, "type": "subscribe", "payload": {"query": UPDATES, "variables": {"id": job_id}}})


async def connect(url: str, who: Person | None) -> Any:
    ws = await websockets.connect(url.replace("http://", "ws://") + "/graphql",
                                  subprotocols=[Subprotocol("graphql-transport-ws")],
                                  additional_headers=who.headers if who else {})
    socket = Socket(ws)
    await socket.send({"type": "connection_init"})
    assert (await socket.recv())["type"] == "connection_ack"
    return socket


async def test_job_updates_until_succeeded_over_a_websocket(
    live_server: Any, people: People, services: Services, gql: Gql
) -> None:
    """The server under uvicorn has its own services; this test writes progress as another process would."""
    await make_channel(services, "live")
    await set_member(gql, people.owner, "live", people.alice, "MAINTAINER")
    run = data(await gql('mutation { runJob(input: {kind: "reindex", channel: "live"}) { ... on Job { id } } }',
                         as_=people.alice))["runJob"]
    job_id = int(run["id"])
    socket = await connect(live_server.url, people.alice)
    try:
        await socket.subscribe("1", run["id"])
        now = await socket.recv()
        assert now["type"] == "next" and now["payload"]["data"]["jobUpdates"] == {
            "id": run["id"], "status": "QUEUED", "progress": {"done": 0, "total": None, "message": ""},
            "channel": {"name": "live"}, "error": None}
        steps: list[dict[str, Any]] = [
            {"status": "running", "progress_total": 3, "message": "starting"},
            {"progress_done": 1, "message": "linux-64"},
            {"progress_done": 2, "message": "noarch"},
            {"status": "succeeded", "progress_done": 3, "message": "done", "active_key": None},
        ]
        seen = []
        for step in steps:
            await update_run(services, job_id, **step)
            message = await socket.recv()
            assert message["type"] == "next", message
            seen.append(message["payload"]["data"]["jobUpdates"])
        assert [(s["status"], s["progress"]["done"], s["progress"]["message"]) for s in seen] == [
            ("RUNNING", 0, "starting"), ("RUNNING", 1, "linux-64"), ("RUNNING", 2, "noarch"),
            ("SUCCEEDED", 3, "done")]
        assert await socket.recv() == {"id": "1", "type": "complete"}
        # A finished run: its final state at once, then complete.
        await socket.subscribe("2", run["id"])
        assert (await socket.recv())["payload"]["data"]["jobUpdates"]["status"] == "SUCCEEDED"
        assert await socket.recv() == {"id": "2", "type": "complete"}
    finally:
        await socket.ws.close()


async def test_job_updates_while_a_runner_executes_the_job(
    live_server: Any, people: People, services: Services, gql: Gql
) -> None:
    """The uvicorn server streams what a runner with its own services (another process, for it) does."""
    run = data(await gql('mutation { runJob(input: {kind: "test_steps", args: {steps: 4, delay: 1.2}}) '
                         "{ ... on Job { id } ... on Error { message } } }", as_=people.staff))["runJob"]
    socket = await connect(live_server.url, people.staff)
    runner = Runner(services, holder="elsewhere")
    try:
        await socket.subscribe("1", run["id"])
        first = await socket.recv()
        assert first["payload"]["data"]["jobUpdates"]["status"] == "QUEUED"
        runner.start()
        states = []
        while (message := await socket.recv())["type"] == "next":
            states.append(message["payload"]["data"]["jobUpdates"])
        assert message == {"id": "1", "type": "complete"}
    finally:
        await runner.aclose()
        await socket.ws.close()
    assert states[-1]["status"] == "SUCCEEDED" and states[-1]["progress"] == {"done": 4, "total": 4, "message": "done"}
    assert all(s["status"] == "RUNNING" for s in states[:-1])
    done = [s["progress"]["done"] for s in states]
    assert done == sorted(done) and len(set(done)) >= 3, states  # progress seen live, in order
    assert len({json.dumps(s, sort_keys=True) for s in states}) == len(states)  # each message is a change


@pytest.mark.parametrize("who", ["carol", "anonymous", "bob"])
async def test_job_updates_of_an_invisible_job_is_an_error_without_data(
    live_server: Any, people: People, services: Services, who: str
) -> None:
    await make_channel(services, "secret", private=True)
    carol = users.actor_for(await users.get_user(services, "carol"))
    await add_member(services, "secret", carol, Role.MEMBER)  # sees the channel, not its jobs
    run = await queued(services, "secret")
    socket = await connect(live_server.url, None if who == "anonymous" else getattr(people, who))
    try:
        for op_id, job_id in (("1", str(run.id)), ("2", "424242"), ("3", "not-an-id")):
            await socket.subscribe(op_id, job_id)
            assert await socket.recv() == {"id": op_id, "type": "next", "payload": {"data": None, "errors": [
                {"message": "job not found", "extensions": {"code": "NotFound"}}]}}
            assert await socket.recv() == {"id": op_id, "type": "complete"}
    finally:
        await socket.ws.close()


async def test_cancelling_a_running_job_ends_its_updates_with_cancelled(
    live_server: Any, people: People, services: Services, gql: Gql
) -> None:
    run = data(await gql('mutation { runJob(input: {kind: "test_steps", args: {steps: 50, delay: 0.2}}) '
                         "{ ... on Job { id } } }", as_=people.owner))["runJob"]
    socket = await connect(live_server.url, people.staff)
    runner = Runner(services, holder="elsewhere")
    try:
        await socket.subscribe("1", run["id"])
        assert (await socket.recv())["payload"]["data"]["jobUpdates"]["status"] == "QUEUED"
        runner.start()
        while (await socket.recv())["payload"]["data"]["jobUpdates"]["status"] != "RUNNING":
            pass
        cancel = 'mutation($id: ID!) { cancelJob(id: $id) { __typename ... on Job { status } } }'
        assert data(await gql(cancel, {"id": run["id"]}, as_=people.staff))["cancelJob"] == {
            "__typename": "Job", "status": "RUNNING"}  # asked to stop; the runner stops it
        states = []
        while (message := await socket.recv())["type"] == "next":
            states.append(message["payload"]["data"]["jobUpdates"])
        assert message == {"id": "1", "type": "complete"}
        assert states[-1]["status"] == "CANCELLED" and states[-1]["progress"]["done"] < 50
    finally:
        await runner.aclose()
        await socket.ws.close()


async def test_subscriptions_obey_the_query_cost_limit(live_server: Any, people: People, services: Services) -> None:
    await make_channel(services, "costly")
    run = await queued(services, "costly")
    socket = await connect(live_server.url, people.owner)
    costly = ("subscription($id: ID!) { jobUpdates(id: $id) { channel { jobs(first: 100) { nodes { channel { "
              "jobs(first: 100) { nodes { channel { jobs(first: 100) { nodes { id } } } } } } } } } } }")
    try:
        await socket.send({"id": "1", "type": "subscribe",
                           "payload": {"query": costly, "variables": {"id": str(run.id)}}})
        refused = await socket.recv()
        errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY", refused
    finally:
        await socket.ws.close()


async def test_a_waiting_subscription_holds_no_database_connection(
    live_server: Any, people: People, services: Services
) -> None:
    """Many clients watching long jobs must not pin the server's connection pool (or a snapshot) while they wait."""
    await make_channel(services, "idle")
    run = await queued(services, "idle")
    pool = live_server.server.config.app.state.services.db.read_engine.pool
    socket = await connect(live_server.url, people.owner)
    try:
        query = "subscription($id: ID!) { jobUpdates(id: $id) { status channel { name } triggeredBy { username } } }"
        await socket.send({"id": "1", "type": "subscribe",
                           "payload": {"query": query, "variables": {"id": str(run.id)}}})
        assert (await socket.recv())["payload"]["data"]["jobUpdates"]["status"] == "QUEUED"
        await asyncio.sleep(0.3)  # the first state is sent; the subscription now waits for a change
        assert pool.checkedout() == 0
        await update_run(services, run.id, status="running")  # type: ignore[arg-type]
        assert (await socket.recv())["payload"]["data"]["jobUpdates"]["status"] == "RUNNING"
        await asyncio.sleep(0.3)
        assert pool.checkedout() == 0
    finally:
        await socket.ws.close()


async def test_a_subscription_over_plain_http_is_a_400_naming_the_websocket(
    client: Any, people: People, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    await make_channel(services, "plain")
    run = await queued(services, "plain")
    variables = {"id": str(run.id)}
    with caplog.at_level("ERROR"):
        for response in (
            await client.post("/graphql", json={"query": UPDATES, "variables": variables},
                              headers=people.owner.headers),
            await client.get("/graphql", params={"query": UPDATES, "variables": json.dumps(variables)},
                             headers=people.owner.headers),
        ):
            assert response.status_code == 400, response.text
            assert "websocket" in response.json()["errors"][0]["message"]
    assert not caplog.records  # a client's mistake, not a server error
    # A document that also holds a subscription still runs the query it names.
    both = UPDATES.replace("subscription(", "subscription Watch(") + ' query Now { jobs(first: 1) { totalCount } }'
    answer = await client.post("/graphql", json={"query": both, "variables": variables, "operationName": "Now"},
                               headers=people.owner.headers)
    assert answer.status_code == 200 and answer.json()["data"]["jobs"]["totalCount"] == 1, answer.text


@pytest.mark.parametrize("ended", ["key revoked", "session ended", "account disabled"])
async def test_revoked_credentials_end_the_stream_at_its_next_message(
    live_server: Any, people: People, services: Services, gql: Gql, ended: str
) -> None:
    """A websocket outlives its handshake: once the API key or session it was opened with is revoked,
    or the account disabled, no further state is sent; the stream ends with an authentication error."""
    from graphconda.services import api_keys, sessions
    from tests.helpers.sessions import session_cookie

    await make_channel(services, "live")
    await set_member(gql, people.owner, "live", people.alice, "MAINTAINER")
    run = data(await gql('mutation { runJob(input: {kind: "reindex", channel: "live"}) { ... on Job { id } } }',
                         as_=people.alice))["runJob"]
    if ended == "session ended":
        cookie = await session_cookie(services, "alice")
        ws = await websockets.connect(live_server.url.replace("http://", "ws://") + "/graphql",
                                      subprotocols=[Subprotocol("graphql-transport-ws")],
                                      additional_headers={"cookie": f"graphconda_session={cookie}"})
        socket = Socket(ws)
        await socket.send({"type": "connection_init"})
        assert (await socket.recv())["type"] == "connection_ack"
    else:
        socket = await connect(live_server.url, people.alice)
    alice = users.actor_for(await users.get_user(services, "alice"))
    try:
        await socket.subscribe("1", run["id"])
        assert (await socket.recv())["payload"]["data"]["jobUpdates"]["status"] == "QUEUED"
        if ended == "key revoked":
            key_id = await api_keys.find_key_id(services, people.alice.key)
            assert key_id is not None
            await api_keys.revoke_api_key(services, alice, key_id)
        elif ended == "session ended":
            await sessions.end_all_sessions(services, alice)
        else:
            await users.set_disabled(services, SYSTEM, "alice", True)
        await update_run(services, int(run["id"]), status="running", progress_total=3)
        message = {"key revoked": "this API key was revoked", "session ended": "you were signed out; log in again",
                   "account disabled": "this account is disabled"}[ended]
        refusal = {"data": None, "errors": [{"message": message, "extensions": {"code": "PermissionDenied"}}]}
        assert await socket.recv() == {"id": "1", "type": "next", "payload": refusal}
        assert await socket.recv() == {"id": "1", "type": "complete"}
        # A new subscription on the same socket gets no data either.
        await socket.subscribe("2", run["id"])
        assert await socket.recv() == {"id": "2", "type": "next", "payload": refusal}
    finally:
        await socket.ws.close()


async def test_queries_and_mutations_over_a_websocket_act_as_its_credentials_now(
    live_server: Any, people: People, services: Services
) -> None:
    """Queries and mutations sent over an open websocket: a revoked key acts no more, a server role
    taken away no longer applies (each operation resolves the actor again)."""
    from graphconda.services import api_keys

    staff = await connect(live_server.url, people.staff)
    owner = await connect(live_server.url, people.owner)
    try:
        listing = {"query": "{ users { username } }"}
        await staff.send({"id": "1", "type": "subscribe", "payload": listing})
        assert "users" in (await staff.recv())["payload"]["data"]
        assert await staff.recv() == {"id": "1", "type": "complete"}
        await users.set_server_role(services, SYSTEM, "staff", None)
        await staff.send({"id": "2", "type": "subscribe", "payload": listing})
        refused = await staff.recv()
        assert refused["payload"]["data"] is None and refused["payload"]["errors"][0]["extensions"]["code"] == (
            "PermissionDenied"), refused

        root = users.actor_for(await users.get_user(services, "root"))
        key_id = await api_keys.find_key_id(services, people.owner.key)
        assert key_id is not None
        await api_keys.revoke_api_key(services, root, key_id)
        revoked = [{"message": "this API key was revoked", "extensions": {"code": "PermissionDenied"}}]
        for op_id, query in (("1", "{ viewer { username } }"),
                             ("2", 'mutation { createChannel(input: {name: "late"}) { __typename } }')):
            await owner.send({"id": op_id, "type": "subscribe", "payload": {"query": query}})
            assert await owner.recv() == {"id": op_id, "type": "error", "payload": revoked}
        assert "late" not in {c.name for c in await channels.list_channels(services, SYSTEM)}
    finally:
        await staff.ws.close()
        await owner.ws.close()
