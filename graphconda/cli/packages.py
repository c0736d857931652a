"""`graphconda upload`, `graphconda reindex` and `graphconda package delete`."""

from __future__ import annotations

from pathlib import Path

import click

from graphconda.cli.common import fail, prepare, run, settings_options
from graphconda.settings import Settings


@click.command()
@click.option("--url", default=None,
              help="The server, e.g. http://localhost:8000 (default: server.public_url, else server.host:port).")
@click.option("--channel", "-c", "channel_name", required=True, help="Channel to upload to.")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
@click.option("--api-key", envvar="GRAPHCONDA_API_KEY", default=None, show_envvar=True,
              help="API key (better passed in the environment than on the command line).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@settings_options
def upload(settings: Settings, url: str | None, channel_name: str, force: bool, api_key: str | None,
           no_progress: bool, files: tuple[Path, ...]) -> None:
    """Upload package FILES to a running server; a refused file does not stop the others."""
    from graphconda.upload_client import upload_files

    server = settings.server
    url = url or server.public_url or f"http://{server.host}:{server.port}"
    failed = upload_files(url, channel_name, files, api_key=api_key, force=force, progress=not no_progress,
                          echo=click.echo)
    if failed:
        fail(f"{failed} of {len(files)} files failed")


@click.command()
@click.argument("channel_name")
@settings_options
def reindex(settings: Settings, channel_name: str) -> None:
    """Rebuild CHANNEL_NAME's records and indexes from the package files in storage."""
    from graphconda.services.authz import SYSTEM
    from graphconda.services.reindexing import reindex_channel

    prepare(settings)
    result = run(reindex_channel, settings, SYSTEM, channel_name)
    click.echo(f"reindexed {channel_name}: {result.added} files added, {result.removed} removed, "
               f"{result.skipped} unreadable skipped")


@click.group()
def package() -> None:
    """Manage package files."""


@package.command("delete")
@click.argument("channel_name")
@click.argument("subdir")
@click.argument("filename")
@settings_options
def package_delete(settings: Settings, channel_name: str, subdir: str, filename: str) -> None:
    """Delete FILENAME from CHANNEL_NAME/SUBDIR (indexes and storage)."""
    from graphconda.services.authz import SYSTEM
    from graphconda.services.packages import delete_package_file

    prepare(settings)
    run(delete_package_file, settings, SYSTEM, channel_name, subdir, filename)
    click.echo(f"deleted {channel_name}/{subdir}/{filename}")
