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


@job_kind("synchronize_metrics", channel=True)
async def synchronize_metrics(ctx: JobContext) -> None:
    """Pull the download figures of the channel's registered mirrors and merge them (each exactly once)."""
    from graphconda.services.mirror_metrics import synchronize_metrics as pull

    assert ctx.channel is not None
    report = await pull(ctx.services, ctx.channel, log_line=ctx.log)
    added = sum(report.merged.values())
    ctx.progress(done=len(report.merged), total=len(report.merged) + len(report.failures),
                 message=f"{added} downloads added from {len(report.merged)} mirrors")
    if report.failures:
        # The others merged; the run fails so the failure shows, and the next run pulls the failed ones again.
        raise RuntimeError(f"{len(report.failures)} mirrors failed: " + "; ".join(report.failures[:5]))
