"""Download metrics job kinds: `aggregate_metrics` (server-wide) and `synchronize_metrics` (a channel's
registered mirrors), thin wrappers over services/metrics.py and services/mirror_metrics.py."""

from __future__ import annotations

from graphconda.jobs.registry import JobContext, job_kind


@job_kind("aggregate_metrics", channel=False)
async def aggregate_metrics(ctx: JobContext) -> None:
    """Fold counted downloads into the hour/day/month/year/total figures of their files."""
    from graphconda.services.metrics import AggregateResult, aggregate

    def progress(result: AggregateResult) -> None:
        ctx.check_cancelled()  # between batches: each batch is committed whole or not at all
        ctx.progress(done=result.downloads, message=f"{result.downloads} downloads folded")

    result = await aggregate(ctx.services, progress=progress)
    ctx.progress(done=result.downloads, total=result.downloads,
                 message=f"{result.downloads} downloads folded ({result.events} events, {result.batches} batches)")
