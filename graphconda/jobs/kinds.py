"""The built-in job kinds: thin wrappers that call service functions and report progress."""

from __future__ import annotations

from graphconda.jobs.registry import JobArg, JobContext, job_kind
from graphconda.services import authz

# Kinds that rewrite a channel's records: one of them at a time per channel.
RECORDS = "channel_records"


@job_kind("reindex", channel=True, group=RECORDS)
async def reindex(ctx: JobContext) -> None:
    """Rebuild the channel's records from its package files in storage, then republish."""
    from graphconda.services.reindexing import reindex_channel

    assert ctx.channel is not None

    def on_subdir(done: int, total: int, subdir: str) -> None:
        ctx.check_cancelled()
        ctx.progress(done=done, total=total, message=f"reindexing {subdir}")

    result = await reindex_channel(ctx.services, authz.SYSTEM, ctx.channel.name, on_subdir=on_subdir)
    ctx.progress(done=ctx.total or 0, message=f"{result.added} added, {result.removed} removed, "
                                               f"{result.skipped} skipped")
    ctx.log(ctx.message)


@job_kind("cleanup", channel=False, args={"dry_run": JobArg(bool, False, "only report what would be deleted")})
async def cleanup(ctx: JobContext) -> None:
    """Delete what nothing needs any more (see services/cleanup.py); `dry_run` only reports."""
    from graphconda.services.cleanup import run_cleanup

    report = await run_cleanup(ctx.services, dry_run=ctx.args["dry_run"], progress=ctx.progress, log=ctx.log,
                               check_cancelled=ctx.check_cancelled)
    ctx.progress(message=report.summary(dry_run=ctx.args["dry_run"]))


@job_kind("publish_sweep", channel=False)
async def publish_sweep(ctx: JobContext) -> None:
    """Rebuild the published files of subdirs whose changes a process left unpublished (it died mid-way)."""
    found = await ctx.services.publisher.catch_up()
    ctx.idle = not found
    ctx.progress(done=found, total=found, message=f"{found} subdirs republished" if found else "all published")
