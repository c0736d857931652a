"""`graphconda jobs list|show|run|cancel` and `graphconda scheduler`: the same service calls as GraphQL."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import click

from graphconda.cli.common import fail, prepare, run, settings_options
from graphconda.settings import Settings

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _job_id(value: str) -> int:
    from graphconda.services.job_queries import parse_job_id

    job_id = parse_job_id(value)
    if job_id is None:
        fail(f"job {value} not found")
    assert job_id is not None
    return job_id


@click.group()
def jobs() -> None:
    """List, show, run and cancel background jobs."""


@jobs.command("list")
@click.option("--channel", default=None, help="Only this channel's jobs.")
@click.option("--kind", default=None, help="Only jobs of this kind.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Newest this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def jobs_list(settings: Settings, channel: str | None, kind: str | None, status: str | None, limit: int,
              as_json: bool) -> None:
    """The newest job runs, newest first."""
    from graphconda.services.authz import SYSTEM
    from graphconda.services.jobs import job_summary, list_jobs

    prepare(settings)

    async def listed(services: Any) -> list[dict[str, Any]]:
        found = await list_jobs(services, SYSTEM, channel=channel, kind=kind, status=status, limit=limit)
        return [job_summary(job, name) for job, name in found]

    rows = run(listed, settings)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    click.echo(f"{'ID':>6}  {'KIND':<16} {'CHANNEL':<20} {'STATUS':<10} {'PROGRESS':<10} CREATED")
    for row in rows:
        progress = row["progress"]
        done = f"{progress['done']}/{progress['total']}" if progress["total"] is not None else str(progress["done"])
        click.echo(f"{row['id']:>6}  {row['kind']:<16} {row['channel'] or '-':<20} {row['status']:<10} "
                   f"{done:<10} {row['created_at'][:19]}")


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def jobs_show(settings: Settings, job_id: str, as_json: bool) -> None:
    """One run: status, progress, error and log tail."""
    from graphconda.services.authz import SYSTEM
    from graphconda.services.jobs import describe_job

    prepare(settings)
    row = run(describe_job, settings, SYSTEM, _job_id(job_id))
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    progress = row["progress"]
    for label, value in [
        ("job", f"{row['id']} {row['kind']}" + (f" on {row['channel']}" if row["channel"] else "")),
        ("status", row["status"] + (f" (attempt {row['attempt']})" if row["attempt"] > 1 else "")),
        ("progress", f"{progress['done']}/{progress['total'] if progress['total'] is not None else '?'}"
                     + (f"  {progress['message']}" if progress["message"] else "")),
        ("args", json.dumps(row["args"])),
        ("scheduled", "yes" if row["scheduled"] else "no"),
        ("created", row["created_at"]), ("started", row["started_at"] or "-"), ("finished", row["finished_at"] or "-"),
    ]:
        click.echo(f"{label + ':':<10} {value}")
    if row["error"]:
        click.echo(f"error:     {row['error']}")
    if row["log_tail"]:
        click.echo("log:")
        for line in row["log_tail"].splitlines():
            click.echo(f"  {line}")


def _parse_args(kind_name: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    from graphconda.jobs.registry import get_kind, parse_arg

    kind = get_kind(kind_name)
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--arg takes KEY=VALUE, not {pair!r}")
        args[key] = parse_arg(kind, key, raw) if kind is not None else raw
    return args


@jobs.command("run")
@click.argument("kind")
@click.option("--channel", default=None, help="The channel (for channel jobs).")
@click.option("--arg", "pairs", multiple=True, metavar="KEY=VALUE", help="A job argument (repeat).")
@click.option("--wait", is_flag=True, help="Show progress until it finishes; exit 1 unless it succeeded.")
@settings_options
def jobs_run(settings: Settings, kind: str, channel: str | None, pairs: tuple[str, ...], wait: bool) -> None:
    """Queue a run of KIND and print its id (an existing queued or running one is reused).

    With --wait this process also runs it if no server claims it first.
    """
    from graphconda.jobs.registry import load_modules
    from graphconda.services.authz import SYSTEM
    from graphconda.services.jobs import run_job

    prepare(settings)
    load_modules(settings.jobs.modules)
    args = _parse_args(kind, pairs)
    if not wait:
        job = run(lambda services: run_job(services, SYSTEM, kind, channel=channel, args=args), settings)
        click.echo(job.id)
        return
    status, error = asyncio.run(_run_and_wait(settings, kind, channel, args))
    if status != "succeeded":
        fail(f"job {status}" + (f": {error}" if error else ""))


async def _run_and_wait(settings: Settings, kind: str, channel: str | None,
                        args: dict[str, Any]) -> tuple[str, str]:
    from tqdm import tqdm

    from graphconda.jobs.runner import Runner
    from graphconda.services.authz import SYSTEM
    from graphconda.services.context import open_services
    from graphconda.services.jobs import JobStatus, get_job, run_job

    handle = await open_services(settings)
    services = handle.services
    try:
        job = await run_job(services, SYSTEM, kind, channel=channel, args=args)
        assert job.id is not None
        click.echo(job.id)
        runner = Runner(services, only_ids=[job.id])
        runner.start()
        bar = tqdm(total=None, desc=f"{kind} #{job.id}", unit="", file=sys.stderr, leave=True, dynamic_ncols=True)
        try:
            while True:
                job = await get_job(services, SYSTEM, job.id)
                if job.progress_total is not None and bar.total != job.progress_total:
                    bar.total = job.progress_total
                bar.n = job.progress_done
                bar.set_postfix_str(f"{job.status} {job.message}"[:60], refresh=False)
                bar.refresh()
                if JobStatus(job.status).finished:
                    return job.status, job.error
                await asyncio.sleep(0.5)
        finally:
            bar.close()
            await runner.aclose()
    finally:
        await handle.aclose()


@jobs.command("cancel")
@click.argument("job_id")
@settings_options
def jobs_cancel(settings: Settings, job_id: str) -> None:
    """Cancel a queued run, or ask a running one to stop."""
    from graphconda.services.authz import SYSTEM
    from graphconda.services.jobs import cancel_job

    prepare(settings)
    job = run(cancel_job, settings, SYSTEM, _job_id(job_id))
    click.echo(f"job {job.id} " + ("cancelled" if job.status == "cancelled" else "asked to stop"))


@click.command()
@click.option("--no-runner", is_flag=True, help="Only schedule; leave running jobs to the servers.")
@settings_options
def scheduler(settings: Settings, no_runner: bool) -> None:
    """Run the scheduler (and a job runner) without HTTP, until SIGTERM or Ctrl-C."""
    prepare(settings)
    click.echo(f"graphconda scheduler running{'' if no_runner else ' with a job runner'}; Ctrl-C stops it")
    asyncio.run(_serve_jobs(settings, runner=not no_runner))


async def _serve_jobs(settings: Settings, *, runner: bool) -> None:
    from graphconda.services.context import open_services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handle = await open_services(settings, runner=runner, scheduler=True)
    try:
        await stop.wait()
    finally:
        await handle.aclose()  # running jobs stop and are requeued; the lease is released
