"""Who sees which job runs and schedules: `authz.can_see_job`, and `visible_jobs_clause` agreeing with it in SQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import col

from graphconda.db.models import ChannelMember, JobRun
from graphconda.services import authz
from graphconda.services.authz import ANONYMOUS, SYSTEM, Actor, ChannelAccess, KeyScope, Role
from graphconda.services.context import Services
from tests.helpers.channels import make_channel
from tests.services.test_authz import WHO

CH = 7
SEE_CHANNEL_JOBS = {"server-maintainer", "server-owner", "channel-maintainer", "channel-owner", "system"}
SEE_SERVER_JOBS = {"server-maintainer", "server-owner", "system"}
ACTORS = {**{who: actor for who, (actor, _, _) in WHO.items()}, "system": SYSTEM}


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
@pytest.mark.parametrize("who", [*WHO, "system"])
def test_channel_jobs_are_for_channel_maintainers_and_server_staff(who: str, private: bool) -> None:
    actor, channel_role, package_role = WHO.get(who, (SYSTEM, None, None))
    access = ChannelAccess(CH, private, channel_role, package_role=package_role)
    assert authz.can_see_job(actor, access) == (who in SEE_CHANNEL_JOBS)
    assert authz.can_see_job(actor, None) == (who in SEE_SERVER_JOBS)


def test_scoped_keys_see_jobs_only_through_a_maintainer_scope() -> None:
    owner = Actor(user_id=7, username="co")
    access = ChannelAccess(CH, True, Role.OWNER)
    with_scope = lambda *s: Actor(user_id=7, username="co", scopes=s, api_key_id=1)  # noqa: E731
    assert authz.can_see_job(with_scope(KeyScope(CH, Role.MAINTAINER)), access)
    assert not authz.can_see_job(with_scope(KeyScope(CH, Role.MEMBER)), access)
    assert not authz.can_see_job(with_scope(KeyScope(CH, Role.OWNER, "numpy")), access)  # a package scope
    assert not authz.can_see_job(with_scope(KeyScope(CH + 1, Role.OWNER)), access)
    assert authz.can_see_job(owner, access)
    staff_key = Actor(user_id=3, server_role=Role.OWNER, scopes=(KeyScope(CH, Role.MAINTAINER),), api_key_id=2)
    assert authz.can_see_job(staff_key, access) and not authz.can_see_job(staff_key, None)


async def test_the_sql_clause_selects_exactly_what_can_see_job_allows(services: Services) -> None:
    """Every actor shape, on public and private channels and server-wide runs: SQL and Python agree."""
    from graphconda.services import users

    people: dict[str, int] = {}
    for who, (actor, _, _) in WHO.items():
        if actor.user_id is not None:
            user = await users.create_user(services, SYSTEM, actor.username or who, server_role=actor.server_role)
            assert user.id is not None
            people[who] = user.id
    chans = [await make_channel(services, f"c{i}", private=bool(i % 2)) for i in range(4)]
    now = services.now()
    async with services.db.write() as session:
        roles = [Role.MEMBER, Role.MAINTAINER, Role.OWNER]
        for i, channel in enumerate(chans[:3]):  # c3 has no members at all
            for n, who in enumerate(["channel-member", "channel-maintainer", "channel-owner"]):
                # c0: everyone as named; c1, c2: the roles rotate so each person holds a different one
                rotated = roles[(n + i) % 3]
                assert channel.id is not None
                session.add(ChannelMember(channel_id=channel.id, user_id=people[who], role=rotated.value))
        session.add_all([JobRun(kind="reindex", channel_id=c.id, created_at=now) for c in chans])
        session.add(JobRun(kind="cleanup", channel_id=None, created_at=now))
        await session.flush()
        ids = {c.id: c for c in chans}
    async with services.db.read() as session:
        runs = list(await session.scalars(select(JobRun)))
        member_rows = list(
            await session.execute(
                select(col(ChannelMember.channel_id), col(ChannelMember.user_id), col(ChannelMember.role))
            )
        )

    def access_for(actor: Actor, run: JobRun) -> ChannelAccess | None:
        if run.channel_id is None:
            return None
        role = next((r for c, u, r in member_rows if c == run.channel_id and u == actor.user_id), None)
        return ChannelAccess(run.channel_id, ids[run.channel_id].private, Role(role) if role else None)

    def with_ids(who: str, actor: Actor) -> Actor:
        return Actor(user_id=people.get(who), username=actor.username, server_role=actor.server_role,
                     scopes=actor.scopes, system=actor.system, api_key_id=actor.api_key_id)

    actors = {who: with_ids(who, actor) for who, actor in ACTORS.items()}
    actors["anonymous"] = ANONYMOUS
    c0, c1 = chans[0].id, chans[1].id
    assert c0 is not None and c1 is not None
    for who in ("channel-owner", "channel-maintainer", "server-owner", "user"):
        base = actors[who]
        for scopes in [(KeyScope(c0, Role.MAINTAINER),), (KeyScope(c1, Role.MEMBER), KeyScope(c0, Role.OWNER)),
                       (KeyScope(c0, Role.OWNER, "numpy"),)]:
            actors[f"{who} key {scopes}"] = Actor(user_id=base.user_id, server_role=base.server_role,
                                                  scopes=scopes, api_key_id=1)
    counts = {}
    for who, actor in actors.items():
        async with services.db.read() as session:
            seen = set(await session.scalars(select(col(JobRun.id)).where(authz.visible_jobs_clause(actor))))
        allowed = {run.id for run in runs if authz.can_see_job(actor, access_for(actor, run))}
        assert seen == allowed, who
        counts[who] = len(seen)
    # c0..c2 rotate owner/maintainer/member among three people: each manages two of them.
    assert counts["server-owner"] == counts["system"] == 5
    assert counts["channel-owner"] == counts["channel-maintainer"] == counts["channel-member"] == 2
    assert counts["anonymous"] == counts["user"] == counts["package-owner"] == 0
