"""`graphconda channel create|update|list`."""

from __future__ import annotations

import json
from typing import Any

import click

from graphconda.cli.common import prepare, run, settings_options
from graphconda.settings import Settings


@click.group()
def channel() -> None:
    """Create, update and list channels."""


@channel.command("create")
@click.argument("name")
@click.option("--private", is_flag=True, help="Visible only to its members.")
@click.option("--description", default="", help="A line about the channel.")
@click.option("--owner", default=None, help="User who becomes the channel's owner.")
@click.option("--bz2", is_flag=True, help="Also publish repodata.json.bz2.")
@click.option("--current-repodata", is_flag=True, help="Also publish current_repodata.json.")
@click.option("--no-shards", is_flag=True, help="Publish no sharded repodata (default: the server setting).")
@click.option("--mirror", "mirror_url", default=None, metavar="URL",
              help="A mirror channel of the upstream channel URL.")
@click.option("--proxy", "proxy_url", default=None, metavar="URL",
              help="A proxy channel: fetches from the upstream channel URL on request and caches.")
@click.option("--include", multiple=True, metavar="SPEC", help="Only these package names or match specs (repeat).")
@click.option("--exclude", multiple=True, metavar="SPEC", help="Never these package names or match specs (repeat).")
@click.option("--proxylist", multiple=True, metavar="SPEC",
              help="Indexed here, downloaded from upstream (repeat).")
@click.option("--ttl", type=int, default=None,
              help="Proxy: seconds before upstream indexes are revalidated (default: mirror.ttl_seconds).")
@click.option("--no-sync", is_flag=True, help="Mirror: do not queue a first sync now.")
@click.option("--keep-stored-files", is_flag=True,
              help="Keep the package files a channel of this name left in storage (a lost database), for "
                   "`graphconda reindex` to index; otherwise they are deleted.")
@settings_options
def channel_create(settings: Settings, name: str, private: bool, description: str, owner: str | None, bz2: bool,
                   current_repodata: bool, no_shards: bool, mirror_url: str | None, proxy_url: str | None,
                   include: tuple[str, ...], exclude: tuple[str, ...], proxylist: tuple[str, ...],
                   ttl: int | None, no_sync: bool, keep_stored_files: bool) -> None:
    """Create channel NAME (as the server itself, or as --owner)."""
    from graphconda.services import channels, users
    from graphconda.services.authz import SYSTEM
    from graphconda.services.upstream import redact

    if mirror_url and proxy_url:
        raise click.UsageError("give --mirror or --proxy, not both")
    if keep_stored_files and owner:  # only server staff adopt stored files (authz.can_adopt_stored_files)
        raise click.UsageError("--keep-stored-files creates the channel as the server: give it without --owner")
    mode = "mirror" if mirror_url else "proxy" if proxy_url else None
    prepare(settings)
    spec = channels.ChannelSpec(name=name, description=description, private=private, publish_bz2=bz2,
                                publish_current_repodata=current_repodata, publish_shards=False if no_shards else None,
                                mirror_mode=mode, mirror_channel_url=mirror_url or proxy_url, includelist=include,
                                excludelist=exclude, proxylist=proxylist, ttl=ttl, sync_now=not no_sync,
                                adopt_stored_files=keep_stored_files)

    async def create(services: Any) -> Any:
        # Created by the owner, so the channel service makes them its owner as for any creator.
        actor = users.actor_for(await users.get_user(services, owner)) if owner else SYSTEM
        return await channels.create_channel(services, actor, spec)

    created = run(create, settings)
    kind = f", {created.mirror_mode} of {redact(created.mirror_channel_url or '')}" if created.mirror_mode else ""
    queued = " (first sync queued)" if created.mirror_mode == "mirror" and not no_sync else ""
    click.echo(f"created channel {created.name}" + (" (private)" if created.private else "") + kind + queued)


@channel.command("update")
@click.argument("name")
@click.option("--description", default=None, help="A line about the channel.")
@click.option("--private/--public", default=None, help="Visible only to its members, or to everyone.")
@click.option("--bz2/--no-bz2", default=None, help="Publish repodata.json.bz2, or delete it.")
@click.option("--current-repodata/--no-current-repodata", default=None,
              help="Publish current_repodata.json, or delete it.")
@click.option("--shards/--no-shards", default=None,
              help="Publish sharded repodata (rebuilds every subdir's shards), or remove the shard indexes.")
@click.option("--upstream", default=None, metavar="URL", help="Mirror and proxy channels: a new upstream URL.")
@click.option("--ttl", type=int, default=None, help="Proxy channels: seconds before upstream indexes are revalidated.")
@settings_options
def channel_update(settings: Settings, name: str, description: str | None, private: bool | None, bz2: bool | None,
                   current_repodata: bool | None, shards: bool | None, upstream: str | None,
                   ttl: int | None) -> None:
    """Change channel NAME's settings; options not given stay as they are. Returns once files follow."""
    from graphconda.services import channels
    from graphconda.services.authz import SYSTEM
    from graphconda.services.publishing import options_of

    prepare(settings)
    changes = channels.ChannelUpdate(description=description, private=private, publish_bz2=bz2,
                                     publish_current_repodata=current_repodata, publish_shards=shards,
                                     mirror_channel_url=upstream, ttl=ttl)
    updated = run(channels.update_channel, settings, SYSTEM, name, changes)
    opts = options_of(settings, updated.options)
    click.echo(f"updated channel {updated.name}: {'private' if updated.private else 'public'}, "
               f"bz2 {'on' if opts.bz2 else 'off'}, current_repodata {'on' if opts.current_repodata else 'off'}, "
               f"shards {'on' if opts.shards else 'off'}")


@channel.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def channel_list(settings: Settings, as_json: bool) -> None:
    """List every channel."""
    from dataclasses import asdict

    from graphconda.services import channels
    from graphconda.services.authz import SYSTEM
    from graphconda.services.publishing import options_of

    prepare(settings)
    rows = run(channels.list_channels, settings, SYSTEM)
    if as_json:
        click.echo(json.dumps([{"name": c.name, "private": c.private, "description": c.description,
                                "mirror_mode": c.mirror_mode, "publishing": asdict(options_of(settings, c.options))}
                               for c in rows], indent=2))
        return
    for c in rows:
        flags = " ".join(f for f in ("private" if c.private else "", c.mirror_mode or "") if f)
        click.echo(f"{c.name}\t{flags}\t{c.description}".rstrip())
