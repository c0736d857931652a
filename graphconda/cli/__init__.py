"""The `graphconda` command line: thin commands over the same services the API uses."""

from __future__ import annotations

import click

from graphconda.cli import accounts, channels, jobs, mirrors, packages, server


@click.group()
@click.version_option(package_name="graphconda")
def main() -> None:
    """graphconda: a conda package server with a GraphQL API."""


for _command in (server.serve, server.migrate, channels.channel, accounts.user, accounts.api_key,
                 packages.upload, packages.reindex, packages.package, jobs.jobs, jobs.scheduler, mirrors.mirror):
    main.add_command(_command)
