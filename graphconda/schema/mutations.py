"""The Mutation root: each mutation calls one service and returns its `...Result` union.

Expected failures come back as typed errors (see schema/errors.py); `field` of an
`InvalidInput` names the argument path (`input.name`). After every mutation the request's
loaders and read snapshot are dropped, so the returned objects show the new state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from graphconda.schema.context import Info
from graphconda.schema.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooLarge,
    outcome,
)
from graphconda.schema.types.api_key import ApiKey, NewApiKey
from graphconda.schema.types.channel import Channel
from graphconda.schema.types.deleted import DeletedChannel, DeletedPackageFile
from graphconda.schema.types.enums import Role
from graphconda.schema.types.inputs import (
    CreateApiKeyInput,
    CreateChannelInput,
    RegisterMirrorInput,
    RunJobInput,
    SetScheduleInput,
    SyncMirrorInput,
    SyncMode,
    UpdateChannelInput,
)
from graphconda.schema.types.job import Job, Schedule
from graphconda.schema.types.member import Member
from graphconda.schema.types.package import Package
from graphconda.schema.types.package_file import PackageFile
from graphconda.schema.types.registered_mirror import RegisteredMirror
from graphconda.schema.types.session import SignedOut
from graphconda.schema.types.user import User
from graphconda.services import (
    api_keys,
    channels,
    job_queries,
    jobs,
    members,
    mirror_metrics,
    mirroring,
    packages,
    sessions,
    users,
)

T = TypeVar("T")
UPLOAD_CHUNK = 1024 * 1024

CreateChannelResult = Annotated[
    Channel | AlreadyExists | PermissionDenied | InvalidInput, strawberry.union("CreateChannelResult")
]
UpdateChannelResult = Annotated[
    Channel | NotFound | PermissionDenied | InvalidInput, strawberry.union("UpdateChannelResult")
]
DeleteChannelResult = Annotated[DeletedChannel | NotFound | PermissionDenied, strawberry.union("DeleteChannelResult")]
SetChannelMemberResult = Annotated[
    Member | NotFound | PermissionDenied | InvalidInput | Conflict, strawberry.union("SetChannelMemberResult")
]
RemoveChannelMemberResult = Annotated[
    Channel | NotFound | PermissionDenied | Conflict, strawberry.union("RemoveChannelMemberResult")
]
SetPackageMemberResult = Annotated[
    Member | NotFound | PermissionDenied | InvalidInput, strawberry.union("SetPackageMemberResult")
]
RemovePackageMemberResult = Annotated[
    Package | NotFound | PermissionDenied, strawberry.union("RemovePackageMemberResult")
]
UploadPackageResult = Annotated[
    PackageFile | AlreadyExists | InvalidInput | PermissionDenied | NotFound | Conflict | TooLarge,
    strawberry.union("UploadPackageResult"),
]
DeletePackageFileResult = Annotated[
    DeletedPackageFile | NotFound | PermissionDenied | InvalidInput | Conflict,
    strawberry.union("DeletePackageFileResult"),
]
CreateApiKeyResult = Annotated[
    NewApiKey | PermissionDenied | InvalidInput | NotFound, strawberry.union("CreateApiKeyResult")
]
RevokeApiKeyResult = Annotated[ApiKey | NotFound | PermissionDenied, strawberry.union("RevokeApiKeyResult")]
SetServerRoleResult = Annotated[
    User | NotFound | PermissionDenied | InvalidInput | Conflict, strawberry.union("SetServerRoleResult")
]
RunJobResult = Annotated[Job | NotFound | PermissionDenied | InvalidInput | Conflict, strawberry.union("RunJobResult")]
SyncMirrorResult = Annotated[Job | NotFound | PermissionDenied | Conflict | InvalidInput,
                             strawberry.union("SyncMirrorResult")]
CancelJobResult = Annotated[Job | NotFound | PermissionDenied | Conflict, strawberry.union("CancelJobResult")]
SetScheduleResult = Annotated[
    Schedule | NotFound | PermissionDenied | InvalidInput, strawberry.union("SetScheduleResult")
]

JOB_INPUT = {"kind": "input.kind", "channel": "input.channel", "args": "input.args"}
SCHEDULE_INPUT = {
    "kind": "input.kind",
    "channel": "input.channel",
    "interval_seconds": "input.intervalSeconds",
    "cron": "input.cron",
    "enabled": "input.enabled",
}
RegisterMirrorResult = Annotated[
    RegisteredMirror | NotFound | PermissionDenied | InvalidInput, strawberry.union("RegisterMirrorResult")
]
UnregisterMirrorResult = Annotated[
    RegisteredMirror | NotFound | PermissionDenied, strawberry.union("UnregisterMirrorResult")
]
MIRROR_INPUT = {"url": "input.url", "apiEndpoint": "input.apiEndpoint", "metricsEndpoint": "input.metricsEndpoint"}
SignOutEverywhereResult = Annotated[SignedOut | PermissionDenied, strawberry.union("SignOutEverywhereResult")]

CHANNEL_INPUT = {
    "channel": "input.name",
    "description": "input.description",
    "mirrorMode": "input.mirrorMode",
    "mirrorChannelUrl": "input.mirrorChannelUrl",
    "includelist": "input.includelist",
    "excludelist": "input.excludelist",
    "proxylist": "input.proxylist",
    "publishBz2": "input.publishBz2",
    "publishCurrentRepodata": "input.publishCurrentRepodata",
    "publishShards": "input.publishShards",
    "ttl": "input.ttl",
    "registerWithUpstream": "input.registerWithUpstream",
    "upstreamApiKey": "input.upstreamApiKey",
}


async def _changed(info: Info, call: Awaitable[T]) -> T:
    """Run a writing service call, then make the rest of the request read fresh data."""
    try:
        return await call
    finally:
        await info.context.changed()


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(UPLOAD_CHUNK):
        yield chunk


async def _settled(result: T | Exception) -> T:
    """A result computed already, as the awaitable `outcome` maps (an error is raised there)."""
    if isinstance(result, Exception):
        raise result
    return result


async def _create_api_key(info: Info, input: CreateApiKeyInput) -> tuple[Any, str]:
    ctx = info.context
    scopes = [api_keys.ScopeSpec(channel=s.channel, role=s.role.domain, package=s.package) for s in input.scopes]
    return await api_keys.create_api_key(
        ctx.services, ctx.actor, username=input.username, description=input.description,
        expires_at=input.expires_at, scopes=scopes,
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a channel; you become its owner.")
    async def create_channel(self, info: Info, input: CreateChannelInput) -> CreateChannelResult:
        spec = channels.ChannelSpec(
            name=input.name,
            description=input.description,
            private=input.private,
            mirror_mode=str(input.mirror_mode.value) if input.mirror_mode else None,
            mirror_channel_url=input.mirror_channel_url,
            includelist=input.includelist,
            excludelist=input.excludelist,
            proxylist=input.proxylist,
            ttl=input.ttl,
            mirror_prune=input.mirror_prune,
            sync_now=input.sync_now,
            publish_bz2=input.publish_bz2,
            publish_current_repodata=input.publish_current_repodata,
            publish_shards=input.publish_shards,
        )
        if input.register_with_upstream:
            call = mirror_metrics.create_registered_mirror(info.context.services, info.context.actor, spec,
                                                           base_url=info.context.base_url,
                                                           api_key=input.upstream_api_key or "")
        else:
            call = channels.create_channel(info.context.services, info.context.actor, spec)
        return await outcome(_changed(info, call), Channel.from_model, CreateChannelResult, fields=CHANNEL_INPUT)

    @strawberry.mutation(description="Register a mirror of a channel on another server (channel owners and "
                                     "maintainers); its metrics endpoint is asked once, and must answer.")
    async def register_mirror(self, info: Info, input: RegisterMirrorInput) -> RegisterMirrorResult:
        call = mirror_metrics.register_mirror(info.context.services, info.context.actor, input.channel, url=input.url,
                                              api_endpoint=input.api_endpoint,
                                              metrics_endpoint=input.metrics_endpoint)
        return await outcome(_changed(info, call), RegisteredMirror.from_model, RegisterMirrorResult,
                             fields=MIRROR_INPUT)

    @strawberry.mutation(description="Forget a registered mirror (its figures pulled so far stay).")
    async def unregister_mirror(self, info: Info, id: strawberry.ID) -> UnregisterMirrorResult:
        try:
            mirror_id = int(id)
        except ValueError:
            return NotFound(message="registered mirror not found")
        call = mirror_metrics.unregister_mirror(info.context.services, info.context.actor, mirror_id)
        return await outcome(_changed(info, call), RegisteredMirror.from_model, UnregisterMirrorResult)

    @strawberry.mutation(description="Change a channel's settings (channel owners and maintainers).")
    async def update_channel(self, info: Info, input: UpdateChannelInput) -> UpdateChannelResult:
        changes = channels.ChannelUpdate(
            description=input.description,
            private=input.private,
            mirror_channel_url=input.mirror_channel_url,
            includelist=input.includelist,
            excludelist=input.excludelist,
            proxylist=input.proxylist,
            ttl=input.ttl,
            mirror_prune=input.mirror_prune,
            publish_bz2=input.publish_bz2,
            publish_current_repodata=input.publish_current_repodata,
            publish_shards=input.publish_shards,
        )
        call = channels.update_channel(info.context.services, info.context.actor, input.name, changes)
        return await outcome(_changed(info, call), Channel.from_model, UpdateChannelResult, fields=CHANNEL_INPUT)

    @strawberry.mutation(description="Delete a channel with all its packages and files (channel owners).")
    async def delete_channel(self, info: Info, name: str) -> DeleteChannelResult:
        call = channels.delete_channel(info.context.services, info.context.actor, name)
        return await outcome(_changed(info, call), lambda c: DeletedChannel(name=c.name), DeleteChannelResult)

    @strawberry.mutation(description="Give a user a role on a channel, or change the role they have.")
    async def set_channel_member(
        self, info: Info, channel: str, username: str, role: Role
    ) -> SetChannelMemberResult:
        call = members.set_channel_member(info.context.services, info.context.actor, channel, username, role.domain)
        return await outcome(_changed(info, call), lambda m: Member.from_model(m.user, m.role), SetChannelMemberResult)

    @strawberry.mutation(description="Take a user's role on a channel away; returns the channel.")
    async def remove_channel_member(self, info: Info, channel: str, username: str) -> RemoveChannelMemberResult:
        call = members.remove_channel_member(info.context.services, info.context.actor, channel, username)
        return await outcome(_changed(info, call), Channel.from_model, RemoveChannelMemberResult)

    @strawberry.mutation(description="Give a user a role on one package of a channel.")
    async def set_package_member(
        self, info: Info, channel: str, package: str, username: str, role: Role
    ) -> SetPackageMemberResult:
        call = members.set_package_member(
            info.context.services, info.context.actor, channel, package, username, role.domain
        )
        return await outcome(_changed(info, call), lambda m: Member.from_model(m.user, m.role), SetPackageMemberResult)

    @strawberry.mutation(description="Take a user's role on a package away; returns the package.")
    async def remove_package_member(
        self, info: Info, channel: str, package: str, username: str
    ) -> RemovePackageMemberResult:
        call = members.remove_package_member(info.context.services, info.context.actor, channel, package, username)
        return await outcome(_changed(info, call), Package.from_model, RemovePackageMemberResult)

    @strawberry.mutation(
        description="Upload package files (GraphQL multipart request spec); one result per file, in order. "
        "Files go through the same validation as the REST upload routes. For large files use those routes."
    )
    async def upload_packages(
        self, info: Info, channel: str, files: list[Upload], force: bool = False
    ) -> list[UploadPackageResult]:
        # Checked one by one, committed together (one shard-index write per subdir).
        results: list[Any] = [None] * len(files)
        todo: list[tuple[int, UploadFile]] = []
        for i, upload in enumerate(files):
            if not isinstance(upload, UploadFile):
                results[i] = InvalidInput(message="each entry of `files` must be a file part of the multipart "
                                          "request", field="files")
            elif not upload.filename:
                results[i] = InvalidInput(message="each uploaded file needs a filename", field="files")
            else:
                todo.append((i, upload))
        if todo:
            call = packages.ingest_each(info.context.services, info.context.actor, channel,
                                        [(upload.filename or "", _chunks(upload)) for _, upload in todo], force=force)
            for (i, _), result in zip(todo, await _changed(info, call), strict=True):
                results[i] = await outcome(_settled(result), PackageFile.from_model, UploadPackageResult)
        return results

    @strawberry.mutation(description="Delete one package file (channel owners/maintainers, package owners).")
    async def delete_package_file(
        self, info: Info, channel: str, subdir: str, filename: str
    ) -> DeletePackageFileResult:
        call = packages.delete_package_file(info.context.services, info.context.actor, channel, subdir, filename)
        return await outcome(
            _changed(info, call),
            lambda _: DeletedPackageFile(channel=channel, subdir=subdir, filename=filename),
            DeletePackageFileResult,
        )

    @strawberry.mutation(description="Create an API key. Its secret is in the result, this once only.")
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyResult:
        call = _create_api_key(info, input)
        return await outcome(
            _changed(info, call),
            lambda made: NewApiKey(api_key=ApiKey.from_model(made[0]), secret=made[1]),
            CreateApiKeyResult,
            fields={"scopes": "input.scopes", "description": "input.description", "expiresAt": "input.expiresAt"},
        )

    @strawberry.mutation(description="Revoke an API key (your own; server owners: anyone's).")
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> RevokeApiKeyResult:
        key_id = int(id) if str(id).isdigit() and len(str(id)) < 19 else -1
        call = api_keys.revoke_api_key(info.context.services, info.context.actor, key_id)
        return await outcome(_changed(info, call), ApiKey.from_model, RevokeApiKeyResult)

    @strawberry.mutation(description="Give a user a server role; null removes it (server owners only).")
    async def set_server_role(self, info: Info, username: str, role: Role | None) -> SetServerRoleResult:
        call = users.set_server_role(info.context.services, info.context.actor, username, role.domain if role else None)
        return await outcome(_changed(info, call), User.from_model, SetServerRoleResult)

    @strawberry.mutation(
        description="Start a job (channel jobs: channel owners and maintainers; server-wide: server staff). "
        "Returns the queued run, or the run of the same kind and channel already queued or running."
    )
    async def run_job(self, info: Info, input: RunJobInput) -> RunJobResult:
        if input.args is not None and not isinstance(input.args, dict):
            return InvalidInput(message="args must be an object of argument names and values", field="input.args")
        args: dict[str, Any] = dict(input.args or {})
        call = jobs.run_job(info.context.services, info.context.actor, input.kind, channel=input.channel, args=args)
        fields = {**JOB_INPUT, **{f"args.{key}": f"input.args.{key}" for key in args}}
        return await outcome(_changed(info, call), Job.from_model, RunJobResult, fields=fields)

    @strawberry.mutation(
        description="Start a sync of a mirror channel (channel owners and maintainers, server staff); returns "
        "the queued run, or the sync already queued or running. Follow it with `jobUpdates`."
    )
    async def sync_mirror(self, info: Info, input: SyncMirrorInput) -> SyncMirrorResult:
        call = mirroring.start_sync(info.context.services, info.context.actor, input.channel,
                                    repodata_only=input.mode == SyncMode.SYNCHRONIZE_REPODATA)
        return await outcome(_changed(info, call), Job.from_model, SyncMirrorResult,
                             fields={"channel": "input.channel"})

    @strawberry.mutation(
        description="Cancel a job run: a queued one at once; a running one stops at its next check "
        "(watch it reach CANCELLED with `jobUpdates`)."
    )
    async def cancel_job(self, info: Info, id: strawberry.ID) -> CancelJobResult:
        job_id = job_queries.parse_job_id(id)
        if job_id is None:
            return NotFound(message="job not found")
        call = jobs.cancel_job(info.context.services, info.context.actor, job_id)
        return await outcome(_changed(info, call), Job.from_model, CancelJobResult)

    @strawberry.mutation(
        description="Create or change a periodic job; server-wide when `channel` is omitted (server staff). "
        "The running scheduler picks the change up within one lease renewal."
    )
    async def set_schedule(self, info: Info, input: SetScheduleInput) -> SetScheduleResult:
        call = jobs.set_schedule(
            info.context.services,
            info.context.actor,
            input.kind,
            channel=input.channel,
            interval_seconds=input.interval_seconds,
            cron=input.cron,
            enabled=input.enabled,
        )
        return await outcome(_changed(info, call), Schedule.from_model, SetScheduleResult, fields=SCHEDULE_INPUT)

    @strawberry.mutation(
        description="End every browser session of yours, this one included (API keys stay valid: revoke them apart)."
    )
    async def sign_out_everywhere(self, info: Info) -> SignOutEverywhereResult:
        call = sessions.end_all_sessions(info.context.services, info.context.actor)
        return await outcome(_changed(info, call), lambda n: SignedOut(sessions_ended=n), SignOutEverywhereResult)
