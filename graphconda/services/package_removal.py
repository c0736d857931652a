"""Removing a whole package from a channel: every file of it (indexes, storage), then its row and members.

Each file goes through services.packages.delete_package_file, the same path as deleting one
file, so indexes and storage stay consistent; the rights are checked once before any file goes.
"""

from __future__ import annotations

from contextlib import suppress

from sqlalchemy import delete, select
from sqlmodel import col

from graphconda.db.models import Package, PackageFile
from graphconda.errors import NotFoundError
from graphconda.services import authz, packages
from graphconda.services.access import UPLOADS, gate
from graphconda.services.authz import Actor
from graphconda.services.context import Services


async def delete_package(services: Services, actor: Actor, channel_name: str, name: str) -> None:
    """Delete package `name` of `channel_name` with all its files (channel owner/maintainer, package owner)."""
    async with services.db.read() as session:
        channel, access = await gate(session, actor, channel_name, allow=UPLOADS, action="deletions",
                                     package_name=name if isinstance(name, str) else None)
        package = await session.scalar(select(Package).where(col(Package.channel_id) == channel.id,
                                                             col(Package.name) == name))
        if package is None:
            raise NotFoundError("package not found")
        authz.require_delete_package(actor, access, package.name)
        files = list((await session.execute(select(col(PackageFile.subdir), col(PackageFile.filename))
                                            .where(col(PackageFile.package_id) == package.id))).all())
    for subdir, filename in files:
        with suppress(NotFoundError):  # deleted meanwhile by someone else: the goal is reached
            await packages.delete_package_file(services, actor, channel.name, subdir, filename)
    async with services.db.write() as session:
        # Package members go with it (ON DELETE CASCADE); a file uploaded meanwhile keeps the row.
        left = await session.scalar(select(col(PackageFile.id)).where(col(PackageFile.package_id) == package.id))
        if left is None:
            await session.execute(delete(Package).where(col(Package.id) == package.id))
