"""Mirror job kinds (Quetz's action names): `synchronize` and `synchronize_repodata`, over services/mirroring.py."""

from __future__ import annotations

from graphconda.jobs.kinds import RECORDS
from graphconda.jobs.registry import JobContext, job_kind


async def _sync(ctx: JobContext, *, verify_archives: bool) -> None:
    from graphconda.services.mirroring import sync_mirror

    assert ctx.channel is not None
    report = await sync_mirror(ctx.services, ctx.channel, verify_archives=verify_archives, progress=ctx.progress,
                               log_line=ctx.log, check_cancelled=ctx.check_cancelled)
    if report.failures:
        # The run fails so the failure shows; what did arrive is published, and the next run retries the rest.
        raise RuntimeError(f"{len(report.failures)} failed: " + "; ".join(report.failures[:5]))


@job_kind("synchronize", channel=True, group=RECORDS)
async def synchronize(ctx: JobContext) -> None:
    """Copy what is missing or changed from the mirror's upstream, opening each archive to check it."""
    await _sync(ctx, verify_archives=True)


@job_kind("synchronize_repodata", channel=True, group=RECORDS)
async def synchronize_repodata(ctx: JobContext) -> None:
    """Copy what is missing or changed from the mirror's upstream, trusting records whose checksums match."""
    await _sync(ctx, verify_archives=False)
