"""The permission matrix, action by action and role by role (graphconda/services/authz.py).

`ok` means allowed; 401 anonymous callers told to authenticate; 403 known callers refused;
404 private channels that the caller may not know exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from graphconda.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from graphconda.services import authz
from graphconda.services.authz import ANONYMOUS, SYSTEM, Actor, ChannelAccess, KeyScope, Role

CH = 7
PKG = "numpy"

# who -> (actor, channel role, role on PKG)
WHO: dict[str, tuple[Actor, Role | None, Role | None]] = {
    "anonymous": (ANONYMOUS, None, None),
    "user": (Actor(user_id=1, username="u"), None, None),
    "server-member": (Actor(user_id=2, username="sm", server_role=Role.MEMBER), None, None),
    "server-maintainer": (Actor(user_id=3, username="smt", server_role=Role.MAINTAINER), None, None),
    "server-owner": (Actor(user_id=4, username="so", server_role=Role.OWNER), None, None),
    "channel-member": (Actor(user_id=5, username="cm"), Role.MEMBER, None),
    "channel-maintainer": (Actor(user_id=6, username="cmt"), Role.MAINTAINER, None),
    "channel-owner": (Actor(user_id=7, username="co"), Role.OWNER, None),
    "package-member": (Actor(user_id=8, username="pm"), None, Role.MEMBER),
    "package-maintainer": (Actor(user_id=9, username="pmt"), None, Role.MAINTAINER),
    "package-owner": (Actor(user_id=10, username="po"), None, Role.OWNER),
}

ACTIONS: dict[str, Callable[[Actor, ChannelAccess], None]] = {
    "read": authz.require_read_channel,
    "read-metrics": authz.require_read_channel_metrics,
    "upload": lambda a, c: authz.require_upload(a, c, PKG, force=False),
    "upload-force": lambda a, c: authz.require_upload(a, c, PKG, force=True),
    "delete-file": lambda a, c: authz.require_delete_package_file(a, c, PKG),
    "manage-package-members": lambda a, c: authz.require_manage_package_members(a, c, PKG, Role.MAINTAINER),
    "update-channel": authz.require_manage_channel,
    "configure-mirroring": lambda a, c: authz.require_manage_channel(a, c, mirror_config=True),
    "delete-channel": authz.require_delete_channel,
    "add-member": lambda a, c: authz.require_manage_members(a, c, Role.MEMBER),
    "add-maintainer": lambda a, c: authz.require_manage_members(a, c, Role.MAINTAINER),
    "add-owner": lambda a, c: authz.require_manage_members(a, c, Role.OWNER),
    "remove-owner": lambda a, c: authz.require_manage_members(a, c, None, current_role=Role.OWNER),
}

ok, E401, E403 = "ok", 401, 403
STAFF = {"server-maintainer": ok, "server-owner": ok}

# Expected outcomes on a PUBLIC channel; unlisted callers get 403 (anonymous: 401).
PUBLIC: dict[str, dict[str, Any]] = {
    "read": dict.fromkeys(WHO, ok),
    "read-metrics": dict.fromkeys(WHO, ok),
    "upload": {**STAFF, "channel-maintainer": ok, "channel-owner": ok, "package-maintainer": ok, "package-owner": ok},
    "upload-force": {**STAFF, "channel-maintainer": ok, "channel-owner": ok, "package-owner": ok},
    "delete-file": {**STAFF, "channel-maintainer": ok, "channel-owner": ok, "package-owner": ok},
    "manage-package-members": {**STAFF, "channel-maintainer": ok, "channel-owner": ok, "package-owner": ok},
    "update-channel": {**STAFF, "channel-maintainer": ok, "channel-owner": ok},
    "configure-mirroring": {**STAFF},
    "delete-channel": {**STAFF, "channel-owner": ok},
    "add-member": {**STAFF, "channel-maintainer": ok, "channel-owner": ok},
    "add-maintainer": {**STAFF, "channel-maintainer": ok, "channel-owner": ok},
    "add-owner": {**STAFF, "channel-owner": ok},
    "remove-owner": {**STAFF, "channel-owner": ok},
}
# Who may know a private channel exists; everyone else gets 404 for every action on it.
SEES_PRIVATE = {"server-maintainer", "server-owner", "channel-member", "channel-maintainer", "channel-owner"}


def expected(action: str, who: str, private: bool) -> Any:
    if private and who not in SEES_PRIVATE:
        return 404
    if who == "anonymous" and action not in ("read", "read-metrics"):
        return E401
    return PUBLIC[action].get(who, E403)


def outcome(fn: Callable[[], None]) -> Any:
    try:
        fn()
    except AuthenticationError:
        return 401
    except PermissionDeniedError:
        return 403
    except NotFoundError as exc:
        assert str(exc) == "channel not found"  # never names the channel
        return 404
    return ok


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("who", list(WHO))
def test_channel_matrix(who: str, action: str, private: bool) -> None:
    actor, channel_role, package_role = WHO[who]
    access = ChannelAccess(CH, private, channel_role, package_role=package_role)
    assert outcome(lambda: ACTIONS[action](actor, access)) == expected(action, who, private)


SERVER_ACTIONS: dict[str, Callable[[Actor], None]] = {
    "create-channel": authz.require_create_channel,
    "create-mirror-channel": lambda a: authz.require_create_channel(a, mirror=True),
    "set-server-role": lambda a: authz.require_set_server_role(a, None, Role.OWNER),
    "list-users": authz.require_read_users,
    "create-user": authz.require_create_user,
    "server-jobs": authz.require_server_staff,
}
SERVER_EXPECTED: dict[str, set[str]] = {
    "create-channel": set(WHO) - {"anonymous"},
    "create-mirror-channel": {"server-maintainer", "server-owner"},
    "set-server-role": {"server-owner"},
    "list-users": {"server-maintainer", "server-owner"},
    "create-user": {"server-owner"},
    "server-jobs": {"server-maintainer", "server-owner"},
}


@pytest.mark.parametrize("action", list(SERVER_ACTIONS))
@pytest.mark.parametrize("who", list(WHO))
def test_server_matrix(who: str, action: str) -> None:
    actor = WHO[who][0]
    want = ok if who in SERVER_EXPECTED[action] else (401 if who == "anonymous" else 403)
    assert outcome(lambda: SERVER_ACTIONS[action](actor)) == want


@pytest.mark.parametrize("action", list(ACTIONS))
def test_system_may_do_everything(action: str) -> None:
    assert outcome(lambda: ACTIONS[action](SYSTEM, ChannelAccess(CH, True, None))) == ok
    for server_action in SERVER_ACTIONS.values():
        server_action(SYSTEM)


def test_maintainer_cannot_promote_itself_to_server_owner() -> None:
    maintainer = WHO["server-maintainer"][0]
    with pytest.raises(PermissionDeniedError):
        authz.require_set_server_role(maintainer, maintainer, Role.OWNER)


def test_anonymous_cannot_set_server_roles() -> None:
    """Quetz: an anonymous request demoted the admin."""
    with pytest.raises(AuthenticationError):
        authz.require_set_server_role(ANONYMOUS, WHO["server-owner"][0], Role.MEMBER)


def test_private_metrics_are_not_readable_anonymously() -> None:
    """Quetz: private channels' download metrics were readable anonymously."""
    assert not authz.can_read_channel_metrics(ANONYMOUS, ChannelAccess(CH, True, None))
    with pytest.raises(NotFoundError, match=r"^channel not found$"):
        authz.require_read_channel_metrics(ANONYMOUS, ChannelAccess(CH, True, None))


# --- API key scopes -------------------------------------------------------------


def keyed(who: str, *scopes: KeyScope) -> tuple[Actor, ChannelAccess]:
    actor, channel_role, package_role = WHO[who]
    scoped = Actor(user_id=actor.user_id, server_role=actor.server_role, scopes=scopes, api_key_id=1)
    return scoped, ChannelAccess(CH, True, channel_role, package_role=package_role)


def test_member_scope_reads_but_cannot_upload() -> None:
    actor, access = keyed("channel-owner", KeyScope(CH, Role.MEMBER))
    authz.require_read_channel(actor, access)
    with pytest.raises(PermissionDeniedError):
        authz.require_upload(actor, access, PKG)


def test_package_scope_uploads_only_that_package() -> None:
    """A package-scoped key carries a package role: maintainer uploads, only owner overwrites and deletes."""
    actor, access = keyed("channel-owner", KeyScope(CH, Role.MAINTAINER, PKG))
    authz.require_read_channel(actor, access)
    authz.require_upload(actor, access, PKG)
    with pytest.raises(PermissionDeniedError):
        authz.require_upload(actor, access, PKG, force=True)
    with pytest.raises(PermissionDeniedError):
        authz.require_delete_package_file(actor, access, PKG)
    owner_key, access = keyed("channel-owner", KeyScope(CH, Role.OWNER, PKG))
    authz.require_upload(owner_key, access, PKG, force=True)
    authz.require_delete_package_file(owner_key, access, PKG)
    with pytest.raises(PermissionDeniedError):
        authz.require_manage_channel(owner_key, access)
    with pytest.raises(PermissionDeniedError):
        authz.require_upload(actor, access, "scipy")
    with pytest.raises(PermissionDeniedError):
        authz.require_manage_channel(actor, access)
    with pytest.raises(PermissionDeniedError):
        authz.require_manage_members(actor, access, Role.MEMBER)


def test_scope_never_exceeds_the_users_own_role() -> None:
    actor, access = keyed("channel-member", KeyScope(CH, Role.OWNER))
    authz.require_read_channel(actor, access)
    with pytest.raises(PermissionDeniedError):
        authz.require_upload(actor, access, PKG)
    assert authz.channel_role(actor, access) == Role.MEMBER


def test_scope_on_another_channel_hides_this_private_one() -> None:
    for who in ("channel-owner", "server-owner"):
        actor, access = keyed(who, KeyScope(CH + 1, Role.OWNER))
        assert not authz.can_read_channel(actor, access)
        with pytest.raises(NotFoundError):
            authz.require_upload(actor, access, PKG)
    actor, _ = keyed("channel-owner", KeyScope(CH + 1, Role.OWNER))
    authz.require_read_channel(actor, ChannelAccess(CH, False, Role.OWNER))  # public stays readable
    with pytest.raises(PermissionDeniedError):
        authz.require_upload(actor, ChannelAccess(CH, False, Role.OWNER), PKG)


def test_key_whose_scopes_are_gone_can_do_nothing() -> None:
    actor, access = keyed("channel-owner")
    assert actor.scopes == ()
    assert not authz.can_read_channel(actor, access)
    assert not authz.can_upload(actor, ChannelAccess(CH, False, Role.OWNER), PKG)


def test_scoped_keys_cannot_do_account_level_things() -> None:
    actor, _ = keyed("server-owner", KeyScope(CH, Role.OWNER))
    for fn in (
        authz.require_create_channel,
        authz.require_read_users,
        authz.require_create_user,
        lambda a: authz.require_set_server_role(a, None, Role.OWNER),
        lambda a: authz.require_manage_api_keys(a, a.user_id),
    ):
        with pytest.raises(PermissionDeniedError):
            fn(actor)


def test_api_keys_are_managed_by_their_user_or_a_server_owner() -> None:
    user = WHO["user"][0]
    authz.require_manage_api_keys(user, user.user_id)
    with pytest.raises(PermissionDeniedError):
        authz.require_manage_api_keys(user, 99)
    with pytest.raises(PermissionDeniedError):
        authz.require_manage_api_keys(WHO["server-maintainer"][0], 99)
    authz.require_manage_api_keys(WHO["server-owner"][0], 99)
    with pytest.raises(AuthenticationError):
        authz.require_manage_api_keys(ANONYMOUS, None)


@pytest.mark.parametrize("value", ["admin", "", "OWNERS", "own er", None, 3])
def test_parse_role_rejects_unknown_roles(value: Any) -> None:
    from graphconda.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="owner, maintainer"):
        authz.parse_role(value)


def test_parse_role_accepts_any_case() -> None:
    assert authz.parse_role("Maintainer") == Role.MAINTAINER
    assert authz.parse_role(None, optional=True) is None
