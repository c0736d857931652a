"""`graphconda mirror sync|status`: start a mirror channel's sync (and follow it), or show how it stands."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from graphconda.cli.common import prepare, run, settings_options
from graphconda.settings import Settings


@click.group()
def mirror() -> None:
    """Synchronise mirror channels with their upstream."""


@mirror.command("sync")
@click.argument("channel")
@click.option("--repodata-only", is_flag=True,
              help="synchronize_repodata: trust upstream records whose checksums match (no archive check).")
@click.option("--wait", is_flag=True, help="Run the sync in this process and show its progress until it ends.")
@settings_options
def mirror_sync(settings: Settings, channel: str, repodata_only: bool, wait: bool) -> None:
    """Queue a sync of mirror CHANNEL (a running server's job runner picks it up), or run it with --wait."""
    from graphconda.services import mirroring
    from graphconda.services.authz import SYSTEM

    prepare(settings)

    async def go(services: Any) -> Any:
        job = await mirroring.start_sync(services, SYSTEM, channel, repodata_only=repodata_only)
        if not wait:
            return job
        return await _follow(services, job.id)

    job = run(go, settings)
    if not wait:
        click.echo(f"queued job {job.id} ({job.kind} of {channel})")
        return
    click.echo(f"job {job.id} {job.status}: {job.message}")
    if job.status != "succeeded":
        if job.error:
            click.echo(job.error, err=True)
        raise SystemExit(1)


async def _follow(services: Any, job_id: int) -> Any:
    """Run the job here (only it) with a progress bar of subdirs, files and bytes so far beside it; the finished run."""
    from tqdm import tqdm

    from graphconda.jobs.runner import Runner
    from graphconda.services import jobs
    from graphconda.services.authz import SYSTEM

    runner = Runner(services, only_ids={job_id})
    runner.start()
    bar = tqdm(unit="subdir", desc="sync", leave=True)
    try:
        while True:
            job = await jobs.get_job(services, SYSTEM, job_id)
            if job.progress_total is not None:
                bar.total = job.progress_total
                bar.n = job.progress_done
                bar.set_postfix_str(job.message[:90])
                bar.refresh()
            if job.status in ("succeeded", "failed", "cancelled"):
                return job
            await asyncio.sleep(0.3)
    finally:
        bar.close()
        await runner.aclose()


@mirror.command("status")
@click.argument("channel")
@settings_options
def mirror_status(settings: Settings, channel: str) -> None:
    """How mirror CHANNEL stands: upstream (redacted), last sync, files and bytes mirrored, last error."""
    from graphconda.services import mirroring
    from graphconda.services.access import ChannelKind, gate
    from graphconda.services.authz import SYSTEM
    from graphconda.services.upstream import redact

    prepare(settings)

    async def go(services: Any) -> Any:
        async with services.db.read() as session:
            found, _ = await gate(session, SYSTEM, channel, allow={ChannelKind.MIRROR}, action="synchronisation")
        assert found.id is not None
        return found, await mirroring.mirror_state(services, found.id)

    found, state = run(go, settings)
    job = state.last_job
    click.echo(f"channel:       {found.name} (mirror of {redact(found.mirror_channel_url or '')})")
    click.echo(f"last job:      {f'{job.id} {job.kind} {job.status}' if job else 'none'}")
    click.echo(f"last sync:     {state.last_sync_at or 'never'}")
    click.echo(f"last success:  {state.last_success_at or 'never'}")
    click.echo(f"files:         {state.files} ({state.bytes} bytes)")
    if state.last_error:
        click.echo(f"last error:    {state.last_error}")
