"""Job kinds for tests only, registered when a test imports this module or names it in `jobs.modules`."""

from __future__ import annotations

import asyncio

from graphconda.jobs.registry import JobArg, JobContext, TransientJobError, job_kind


@job_kind("test_steps", channel=False, args={"steps": JobArg(int, 3), "delay": JobArg(float, 0.05),
                                             "fail": JobArg(str, ""), "label": JobArg(str, "")})
async def steps(ctx: JobContext) -> None:
    """Counts to `steps`, sleeping `delay` between steps; `fail`: "transient" or "error" at the end."""
    total = ctx.args["steps"]
    for i in range(total):
        ctx.check_cancelled()
        ctx.progress(done=i, total=total, message=f"step {i}")
        ctx.log(f"step {i}")
        await asyncio.sleep(ctx.args["delay"])
    ctx.progress(done=total, total=total, message="done")
    if ctx.args["fail"] == "transient":
        raise TransientJobError("upstream unavailable")
    if ctx.args["fail"] == "error":
        raise RuntimeError("boom")


@job_kind("test_channel_noop", channel=True)
async def channel_noop(ctx: JobContext) -> None:
    assert ctx.channel is not None
    ctx.log(f"channel {ctx.channel.name}")


# The same body under a second name, so a long run does not share the dedupe key of scheduled test_steps runs.
job_kind("test_slow", channel=False, args={"steps": JobArg(int, 3), "delay": JobArg(float, 0.05),
                                           "fail": JobArg(str, ""), "label": JobArg(str, "")})(steps)


# Two kinds of one group: on one channel they run one at a time, on two channels side by side.
RUNS: list[tuple[str, str, float, float]] = []  # (kind, channel, started, finished), loop time


async def _grouped(ctx: JobContext, kind: str) -> None:
    assert ctx.channel is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.sleep(ctx.args["delay"])
    RUNS.append((kind, ctx.channel.name, started, loop.time()))


@job_kind("test_grouped_a", channel=True, group="test_group", args={"delay": JobArg(float, 0.3)})
async def grouped_a(ctx: JobContext) -> None:
    await _grouped(ctx, "test_grouped_a")


@job_kind("test_grouped_b", channel=True, group="test_group", args={"delay": JobArg(float, 0.3)})
async def grouped_b(ctx: JobContext) -> None:
    await _grouped(ctx, "test_grouped_b")
