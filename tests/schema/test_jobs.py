"""Jobs over GraphQL: who may run, cancel, schedule and see jobs; bad input; paging; statements per page."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from graphconda.db.models import JobRun, JobSchedule
from graphconda.services import users
from graphconda.services.context import Services
from tests.helpers.sql import count_statements
from tests.schema.conftest import Gql, MakeChannel, People, Person, data, error_messages, set_member

RUN = """
mutation($input: RunJobInput!) {
  runJob(input: $input) {
    __typename
    ... on Job { id kind status args channel { name } triggeredBy { username } progress { done total message } }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""
CANCEL = """
mutation($id: ID!) {
  cancelJob(id: $id) { __typename ... on Job { id status } ... on Error { message } }
}"""
SCHEDULE = """
mutation($input: SetScheduleInput!) {
  setSchedule(input: $input) {
    __typename
    ... on Schedule { id kind intervalSeconds cron enabled channel { name } }
    ... on InvalidInput { message field }
    ... on Error { message }
  }
}"""
JOBS = """
query($filter: JobFilter, $first: Int, $after: String) {
  jobs(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id kind status channel { name } } }
    nodes { id }
  }
}"""
JOB = "query($id: ID!) { job(id: $id) { id kind status } }"
CHANNEL_JOBS = """
query($name: String!) {
  channel(name: $name) {
    jobs { totalCount nodes { id kind } }
    schedules { kind intervalSeconds }
  }
}"""
SCHEDULES = "{ schedules { kind cron intervalSeconds enabled channel { name } } }"

WHO = ["anonymous", "owner", "staff", "alice", "bob", "carol"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """No runner or scheduler: runs stay as these tests put them (test_job_updates.py runs a real runner)."""
    return {"jobs": {"embedded_runner": False, "embedded_scheduler": False}}


def person(people: People, who: str) -> Person | None:
    return None if who == "anonymous" else getattr(people, who)


@pytest.fixture
async def world(gql: Gql, people: People, make_channel: MakeChannel) -> People:
    """`pub`: alice owns, bob maintains, carol is a member. `priv` (private): alice owns, carol is a member."""
    await make_channel("pub", people.alice)
    await set_member(gql, people.alice, "pub", people.bob, "MAINTAINER")
    await set_member(gql, people.alice, "pub", people.carol, "MEMBER")
    await make_channel("priv", people.alice, private=True)
    await set_member(gql, people.alice, "priv", people.carol, "MEMBER")
    return people


async def count_rows(services: Services, model: Any) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def run(gql: Gql, who: Person | None, kind: str, channel: str | None = None, args: Any = None) -> Any:
    payload: dict[str, Any] = {"kind": kind, "channel": channel}
    if args is not None:
        payload["args"] = args
    return data(await gql(RUN, {"input": payload}, as_=who))["runJob"]


async def finish(services: Services, job_id: str, status: str = "succeeded") -> None:
    """Mark a run finished, as a runner would (these tests run no runner)."""
    async with services.db.write() as session:
        found = await session.get(JobRun, int(job_id))
        assert found is not None
        found.status, found.active_key, found.finished_at = status, None, services.now()


# --- the permission matrix ----------------------------------------------------------

# who -> the __typename runJob answers for (kind, channel)
RUN_MATRIX: dict[tuple[str, str | None], dict[str, str]] = {
    ("reindex", "pub"): {"anonymous": "PermissionDenied", "owner": "Job", "staff": "Job", "alice": "Job",
                         "bob": "Job", "carol": "PermissionDenied"},
    ("reindex", "priv"): {"anonymous": "NotFound", "owner": "Job", "staff": "Job", "alice": "Job",
                          "bob": "NotFound", "carol": "PermissionDenied"},
    ("cleanup", None): {"anonymous": "PermissionDenied", "owner": "Job", "staff": "Job", "alice": "PermissionDenied",
                        "bob": "PermissionDenied", "carol": "PermissionDenied"},
}
# who sees the runs of (kind, channel) in lists, by id, in Channel.jobs
SEES = {
    "pub": {"owner", "staff", "alice", "bob"},
    "priv": {"owner", "staff", "alice"},
    None: {"owner", "staff"},
}


@pytest.mark.parametrize("target", list(RUN_MATRIX), ids=lambda t: f"{t[0]}-{t[1] or 'server'}")
async def test_run_job_matrix(gql: Gql, world: People, services: Services, target: tuple[str, str | None]) -> None:
    kind, channel = target
    for who, expected in RUN_MATRIX[target].items():
        result = await run(gql, person(world, who), kind, channel)
        assert result["__typename"] == expected, (who, result)
        if expected == "Job":
            assert result["kind"] == kind and result["status"] == "QUEUED"
            caller = person(world, who)
            assert caller is not None and result["triggeredBy"] == {"username": caller.username}
            assert (result["channel"] or {}).get("name") == channel
            await finish(services, result["id"])
    allowed = sum(1 for e in RUN_MATRIX[target].values() if e == "Job")
    assert await count_rows(services, JobRun) == allowed  # refused triggers queue nothing


async def test_job_visibility_matrix(gql: Gql, world: People, services: Services) -> None:
    ids = {
        "pub": (await run(gql, world.alice, "reindex", "pub"))["id"],
        "priv": (await run(gql, world.alice, "reindex", "priv"))["id"],
        None: (await run(gql, world.owner, "cleanup"))["id"],
    }
    await run(gql, world.owner, "cleanup", args={"dry_run": True})  # the same active run: no second row
    assert await count_rows(services, JobRun) == 3
    for who in WHO:
        caller = person(world, who)
        visible = {ids[t] for t, seen_by in SEES.items() if who in seen_by}
        listed = data(await gql(JOBS, {}, as_=caller))["jobs"]
        assert {n["id"] for n in listed["nodes"]} == visible, who
        assert listed["totalCount"] == len(visible)
        for target, job_id in ids.items():
            found = data(await gql(JOB, {"id": job_id}, as_=caller))["job"]
            assert (found is not None) == (job_id in visible), (who, target)
        for channel in ("pub", "priv"):
            got = data(await gql(CHANNEL_JOBS, {"name": channel}, as_=caller))["channel"]
            if who in SEES[channel]:
                assert [n["id"] for n in got["jobs"]["nodes"]] == [ids[channel]], (who, channel)
            elif got is not None:  # sees the channel, not its jobs
                assert got == {"jobs": None, "schedules": None}, (who, channel)
            else:
                assert channel == "priv" and who in ("anonymous", "bob")


async def test_cancel_job_matrix(gql: Gql, world: People, services: Services) -> None:
    expected = {"anonymous": "NotFound", "carol": "NotFound", "bob": "NotFound"}  # priv: none of them may see it
    for who in WHO:
        job = await run(gql, world.alice, "reindex", "priv")
        result = data(await gql(CANCEL, {"id": job["id"]}, as_=person(world, who)))["cancelJob"]
        assert result["__typename"] == expected.get(who, "Job"), (who, result)
        if result["__typename"] == "Job":
            assert result == {"__typename": "Job", "id": job["id"], "status": "CANCELLED"}
            again = data(await gql(CANCEL, {"id": job["id"]}, as_=person(world, who)))["cancelJob"]
            assert again["__typename"] == "Conflict"
        else:
            assert result["message"] == "job not found"
            await finish(services, job["id"], "cancelled")
    server_job = await run(gql, world.owner, "cleanup")
    for who in ("alice", "bob", "carol", "anonymous"):
        refused = data(await gql(CANCEL, {"id": server_job["id"]}, as_=person(world, who)))["cancelJob"]
        assert refused["__typename"] == "NotFound", who
    for bad in ("nope", "99999", "-1", "1" * 40):
        assert data(await gql(CANCEL, {"id": bad}, as_=world.owner))["cancelJob"]["__typename"] == "NotFound"
    assert data(await gql(JOB, {"id": server_job["id"]}, as_=world.staff))["job"]["status"] == "QUEUED"


async def test_set_schedule_matrix_and_visibility(gql: Gql, world: People, services: Services) -> None:
    channel_expected = {"anonymous": "NotFound", "owner": "Schedule", "staff": "Schedule", "alice": "Schedule",
                        "bob": "NotFound", "carol": "PermissionDenied"}
    for who, expected in channel_expected.items():
        result = data(await gql(SCHEDULE, {"input": {"kind": "reindex", "channel": "priv", "intervalSeconds": 60}},
                                as_=person(world, who)))["setSchedule"]
        assert result["__typename"] == expected, (who, result)
    for who in WHO:
        result = data(await gql(SCHEDULE, {"input": {"kind": "cleanup", "cron": "0 3 * * *"}},
                                as_=person(world, who)))["setSchedule"]
        assert result["__typename"] == ("Schedule" if who in ("owner", "staff") else "PermissionDenied"), who
    assert await count_rows(services, JobSchedule) == 2  # upserts: one per (kind, channel)
    changed = data(await gql(SCHEDULE, {"input": {"kind": "reindex", "channel": "priv", "cron": "*/5 * * * *",
                                                  "enabled": False}}, as_=world.alice))["setSchedule"]
    assert changed == {"__typename": "Schedule", "id": changed["id"], "kind": "reindex", "intervalSeconds": None,
                       "cron": "*/5 * * * *", "enabled": False, "channel": {"name": "priv"}}
    server = {"kind": "cleanup", "cron": "0 3 * * *", "intervalSeconds": None, "enabled": True, "channel": None}
    private = {"kind": "reindex", "cron": "*/5 * * * *", "intervalSeconds": None, "enabled": False,
               "channel": {"name": "priv"}}
    for who, want in {"owner": [server, private], "staff": [server, private], "alice": [private], "bob": [],
                      "carol": [], "anonymous": []}.items():
        assert data(await gql(SCHEDULES, as_=person(world, who)))["schedules"] == want, who
    mine = data(await gql(CHANNEL_JOBS, {"name": "priv"}, as_=world.alice))["channel"]["schedules"]
    assert mine == [{"kind": "reindex", "intervalSeconds": None}]


# --- bad input: typed errors, nothing queued or stored ------------------------------------

BAD_RUNS: list[tuple[dict[str, Any], str, str | None]] = [
    ({"kind": "no-such-kind", "channel": "pub"}, "InvalidInput", "input.kind"),
    ({"kind": "reindex"}, "InvalidInput", "input.channel"),  # a channel job without a channel
    ({"kind": "cleanup", "channel": "pub"}, "InvalidInput", "input.channel"),  # server-wide with a channel
    ({"kind": "cleanup", "args": {"dry_run": "yes"}}, "InvalidInput", "input.args.dry_run"),
    ({"kind": "cleanup", "args": {"dry_run": 1}}, "InvalidInput", "input.args.dry_run"),
    ({"kind": "cleanup", "args": {"unknown": True}}, "InvalidInput", "input.args.unknown"),
    ({"kind": "cleanup", "args": [True]}, "InvalidInput", "input.args"),
    ({"kind": "cleanup", "args": "dry_run"}, "InvalidInput", "input.args"),
    ({"kind": "reindex", "channel": "nonexistent"}, "NotFound", None),
    ({"kind": "reindex", "channel": "Not A Name!"}, "NotFound", None),
]


@pytest.mark.parametrize(("payload", "typename", "field"), BAD_RUNS, ids=[str(b[0]) for b in BAD_RUNS])
async def test_bad_run_job_input(
    gql: Gql, world: People, services: Services, payload: dict[str, Any], typename: str, field: str | None
) -> None:
    result = data(await gql(RUN, {"input": payload}, as_=world.owner))["runJob"]
    assert result["__typename"] == typename, result
    assert result.get("field") == field
    assert result["message"]
    assert await count_rows(services, JobRun) == 0


async def test_a_private_channel_is_not_found_for_outsiders(gql: Gql, world: People, services: Services) -> None:
    for who in (world.bob, None):
        result = await run(gql, who, "reindex", "priv")
        assert result == {"__typename": "NotFound", "message": "channel not found"}
    assert await count_rows(services, JobRun) == 0


BAD_SCHEDULES: list[tuple[dict[str, Any], str, str | None]] = [
    ({"kind": "cleanup", "cron": "not a cron"}, "InvalidInput", "input.cron"),
    ({"kind": "cleanup", "cron": "61 * * * *"}, "InvalidInput", "input.cron"),
    ({"kind": "cleanup", "intervalSeconds": -5}, "InvalidInput", "input.intervalSeconds"),
    ({"kind": "cleanup", "intervalSeconds": 0}, "InvalidInput", "input.intervalSeconds"),
    ({"kind": "cleanup"}, "InvalidInput", "input.intervalSeconds"),  # neither
    ({"kind": "cleanup", "intervalSeconds": 60, "cron": "* * * * *"}, "InvalidInput", "input.intervalSeconds"),
    ({"kind": "bogus", "intervalSeconds": 60}, "InvalidInput", "input.kind"),
    ({"kind": "reindex", "channel": "priv-nope", "intervalSeconds": 60}, "NotFound", None),
]


@pytest.mark.parametrize(("payload", "typename", "field"), BAD_SCHEDULES, ids=[str(b[0]) for b in BAD_SCHEDULES])
async def test_bad_schedule_input(
    gql: Gql, world: People, services: Services, payload: dict[str, Any], typename: str, field: str | None
) -> None:
    result = data(await gql(SCHEDULE, {"input": payload}, as_=world.owner))["setSchedule"]
    assert result["__typename"] == typename, result
    assert result.get("field") == field
    assert await count_rows(services, JobSchedule) == 0


async def test_wrong_graphql_types_are_refused_before_anything_runs(
    gql: Gql, world: People, services: Services
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        (SCHEDULE, {"input": {"kind": "cleanup", "intervalSeconds": "60"}}),
        (SCHEDULE, {"input": {"kind": "cleanup", "intervalSeconds": 2**40}}),
        (RUN, {"input": {"channel": "pub"}}),
        (JOBS, {"filter": {"status": "DONE"}}),
    ]
    for query, variables in cases:
        result = await gql(query, variables, as_=world.owner)
        assert result.get("data") is None and error_messages(result), result
    assert await count_rows(services, JobRun) == 0 and await count_rows(services, JobSchedule) == 0


# --- pagination -----------------------------------------------------------------------------


async def add_runs(services: Services, channel_ids: list[int | None], kinds: list[str], statuses: list[str],
                   triggered_by: int | None = None) -> list[int]:
    """Finished (or queued) runs straight into the table, oldest first; their ids."""
    rows = []
    async with services.db.write() as session:
        for i, channel_id in enumerate(channel_ids):
            status = statuses[i % len(statuses)]
            rows.append(JobRun(kind=kinds[i % len(kinds)], channel_id=channel_id, status=status,
                               created_at=services.now(), triggered_by_id=triggered_by,
                               args={"n": i}, message=f"run {i}"))
        session.add_all(rows)
    return [r.id for r in rows if r.id is not None]


async def channel_id(services: Services, name: str) -> int:
    from graphconda.db.models import Channel

    async with services.db.read() as session:
        found = await session.scalar(select(col(Channel.id)).where(col(Channel.name) == name))
    assert found is not None
    return int(found)


async def test_jobs_page_newest_first_with_filters(gql: Gql, world: People, services: Services) -> None:
    pub, priv = await channel_id(services, "pub"), await channel_id(services, "priv")
    ids = await add_runs(services, [pub, priv, None] * 9, ["reindex", "reindex", "cleanup"],
                         ["succeeded", "failed", "cancelled", "succeeded"])
    everything = list(reversed(ids))
    seen: list[str] = []
    after = None
    for _ in range(3):
        page = data(await gql(JOBS, {"first": 10, "after": after}, as_=world.staff))["jobs"]
        assert page["totalCount"] == 27
        seen += [e["node"]["id"] for e in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert seen == [str(i) for i in everything]
    # Alice sees her two channels' runs; filters narrow them, and count what they list.
    for flt, expected in [
        ({"channel": "pub"}, [i for n, i in enumerate(ids) if n % 3 == 0]),
        ({"channel": "priv", "status": "FAILED"},
         [i for n, i in enumerate(ids) if n % 3 == 1 and n % 4 == 1]),
        ({"kind": "cleanup"}, []),
        ({"channel": "nope"}, []),
        ({"channel": "Not A Name!"}, []),
        ({"kind": "reindex", "status": "SUCCEEDED"}, [i for n, i in enumerate(ids) if n % 3 != 2 and n % 4 in (0, 3)]),
    ]:
        page = data(await gql(JOBS, {"filter": flt, "first": 100}, as_=world.alice))["jobs"]
        assert [n["id"] for n in page["nodes"]] == [str(i) for i in reversed(expected)], flt
        assert page["totalCount"] == len(expected)
    bad = await gql(JOBS, {"after": "garbage"}, as_=world.staff)
    assert bad["data"] is None and "invalid cursor" in error_messages(bad)[0]
    channels_cursor = data(await gql("{ channels(first: 1) { pageInfo { endCursor } } }"))
    bad = await gql(JOBS, {"after": channels_cursor["channels"]["pageInfo"]["endCursor"]}, as_=world.staff)
    assert bad["data"] is None and "invalid cursor" in error_messages(bad)[0]


async def test_channel_jobs_pages(gql: Gql, world: People, services: Services) -> None:
    pub = await channel_id(services, "pub")
    ids = await add_runs(services, [pub] * 7, ["reindex"], ["succeeded"])
    query = """query($after: String) { channel(name: "pub") { jobs(first: 3, after: $after) {
                 totalCount pageInfo { hasNextPage endCursor } nodes { id args progress { message } } } } }"""
    seen, after = [], None
    while True:
        jobs = data(await gql(query, {"after": after}, as_=world.bob))["channel"]["jobs"]
        assert jobs["totalCount"] == 7
        seen += jobs["nodes"]
        after = jobs["pageInfo"]["endCursor"]
        if not jobs["pageInfo"]["hasNextPage"]:
            break
    assert [n["id"] for n in seen] == [str(i) for i in reversed(ids)]
    assert seen[0]["args"] == {"n": 6} and seen[0]["progress"] == {"message": "run 6"}


# --- cost: constant statements per page, and the cost limit --------------------------------

PAGE = """
query($first: Int!) {
  jobs(first: $first) { totalCount nodes {
    id kind status args progress { done total message } logTail error attempt scheduled createdAt
    channel { name viewerRole jobs(first: 2) { totalCount nodes { id } } schedules { kind } }
    triggeredBy { username }
  } }
}"""


async def test_a_page_of_jobs_costs_constant_statements(gql: Gql, world: People, services: Services) -> None:
    names = [f"ch{i}" for i in range(6)]
    for name in names:
        data(await gql('mutation($n: String!) { createChannel(input: {name: $n}) { __typename } }', {"n": name},
                       as_=world.alice))
    ids = [await channel_id(services, n) for n in names]
    alice = await users.get_user(services, "alice")
    await add_runs(services, [ids[i % 6] for i in range(60)], ["reindex"], ["succeeded"], triggered_by=alice.id)
    for name in names:
        await gql(SCHEDULE, {"input": {"kind": "reindex", "channel": name, "intervalSeconds": 600}}, as_=world.alice)
    await gql(PAGE, {"first": 1}, as_=world.alice)  # records the API key's first use
    counts, logs = [], []
    for first in (3, 60):
        with count_statements(services) as seen:
            found = data(await gql(PAGE, {"first": first}, as_=world.alice))
        assert len(found["jobs"]["nodes"]) == first
        counts.append(len(seen))
        logs.append(seen)
    node = found["jobs"]["nodes"][0]
    assert node["triggeredBy"] == {"username": "alice"} and node["channel"]["jobs"]["totalCount"] == 10
    assert counts[0] == counts[1], "\n".join(logs[0] + ["----"] + logs[1])
    assert counts[1] <= 12, "\n".join(seen)  # auth, BEGIN, page, count, and one per relation


async def test_nested_job_pages_are_refused_by_the_cost_limit(gql: Gql, world: People) -> None:
    query = "{ jobs(first: 100) { nodes { channel { jobs(first: 100) { nodes { channel { jobs(first: 100) { " \
            "nodes { id } } } } } } } } }"
    result = await gql(query, as_=world.owner)
    assert result.get("data") is None
    assert result["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_arguments_as_an_inline_literal(gql: Gql, world: People) -> None:
    query = 'mutation { runJob(input: {kind: "cleanup", args: {dry_run: true}}) { ... on Job { kind args } } }'
    assert data(await gql(query, as_=world.staff))["runJob"] == {"kind": "cleanup", "args": {"dry_run": True}}


async def test_scoped_keys_see_and_run_jobs_only_with_a_maintainer_scope(gql: Gql, world: People) -> None:
    make_key = """mutation($c: String!, $r: Role!) { createApiKey(input: {scopes: [{channel: $c, role: $r}]}) {
                    ... on NewApiKey { secret } } }"""
    keys = {}
    for role in ("MEMBER", "MAINTAINER"):
        secret = data(await gql(make_key, {"c": "pub", "r": role}, as_=world.alice))["createApiKey"]["secret"]
        keys[role] = Person("alice", secret)
    pub_job = await run(gql, world.alice, "reindex", "pub")
    priv_job = await run(gql, world.alice, "reindex", "priv")
    assert (await run(gql, keys["MEMBER"], "reindex", "pub"))["__typename"] == "PermissionDenied"
    assert data(await gql(JOBS, {}, as_=keys["MEMBER"]))["jobs"]["totalCount"] == 0
    assert data(await gql(JOB, {"id": pub_job["id"]}, as_=keys["MEMBER"]))["job"] is None
    assert (await run(gql, keys["MAINTAINER"], "reindex", "pub"))["id"] == pub_job["id"]  # the active run
    assert [n["id"] for n in data(await gql(JOBS, {}, as_=keys["MAINTAINER"]))["jobs"]["nodes"]] == [pub_job["id"]]
    assert data(await gql(JOB, {"id": priv_job["id"]}, as_=keys["MAINTAINER"]))["job"] is None
    refused = data(await gql(CANCEL, {"id": priv_job["id"]}, as_=keys["MAINTAINER"]))["cancelJob"]
    assert refused["__typename"] == "NotFound"
