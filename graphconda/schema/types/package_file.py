"""PackageFile: one uploaded artifact (.conda or .tar.bz2) with its repodata record."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from graphconda.db import models
from graphconda.schema import loaders
from graphconda.schema.context import Info
from graphconda.schema.types.enums import BigInt
from graphconda.schema.types.metrics import DOWNLOADS_DESCRIPTION, DownloadPeriod, DownloadSeries, download_series
from graphconda.schema.types.user import User
from graphconda.services import metrics

if TYPE_CHECKING:
    from graphconda.schema.types.package import Package


@strawberry.type(description="One package file; `depends` and `constrains` come from its repodata record.")
class PackageFile:
    id: strawberry.Private[int]
    channel_id: strawberry.Private[int]
    package_id: strawberry.Private[int]
    uploader_id: strawberry.Private[int | None]
    record_json: strawberry.Private[str]
    filename: str
    subdir: str
    name: str
    version: str
    build: str
    build_number: int
    size: BigInt = strawberry.field(description="Bytes.")
    md5: str
    sha256: str
    timestamp: BigInt | None = strawberry.field(description="Build time from index.json, in milliseconds.")
    uploaded_at: datetime

    @classmethod
    def from_model(cls, file: models.PackageFile) -> PackageFile:
        assert file.id is not None
        return cls(
            id=file.id,
            channel_id=file.channel_id,
            package_id=file.package_id,
            uploader_id=file.uploader_id,
            record_json=file.record,
            filename=file.filename,
            subdir=file.subdir,
            name=file.name,
            version=file.version,
            build=file.build,
            build_number=file.build_number,
            size=BigInt(file.size),
            md5=file.md5,
            sha256=file.sha256,
            timestamp=BigInt(file.timestamp) if file.timestamp is not None else None,
            uploaded_at=file.uploaded_at,
        )

    @cached_property
    def _record(self) -> dict[str, Any]:
        try:
            record = json.loads(self.record_json)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _strings(self, key: str) -> list[str]:
        value = self._record.get(key)
        return [str(v) for v in value] if isinstance(value, list) else []

    @strawberry.field(description="Match specs this file needs, as declared.")
    def depends(self) -> list[str]:
        return self._strings("depends")

    @strawberry.field(description="Match specs this file constrains (without needing them), as declared.")
    def constrains(self) -> list[str]:
        return self._strings("constrains")

    @strawberry.field
    def license(self) -> str | None:
        value = self._record.get("license")
        return value if isinstance(value, str) else None

    @strawberry.field(description="Who uploaded the file; null for mirrored files or deleted users.")
    async def uploader(self, info: Info) -> User | None:
        if self.uploader_id is None:
            return None
        user = await loaders.user_by_id(info.context).load(self.uploader_id)
        return User.from_model(user) if user else None

    @strawberry.field
    async def package(self, info: Info) -> Annotated[Package, strawberry.lazy("graphconda.schema.types.package")]:
        from graphconda.schema.types.package import Package

        found = await loaders.package_by_id(info.context).load(self.package_id)
        assert found is not None
        return Package.from_model(found)

    @strawberry.field(description="Where conda downloads this file.")
    async def download_url(self, info: Info) -> str:
        channel = await loaders.channel_by_id(info.context).load(self.channel_id)
        assert channel is not None
        return f"{info.context.base_url}/get/{channel.name}/{self.subdir}/{self.filename}"

    @strawberry.field(description="All-time downloads of this file.")
    async def download_count(self, info: Info) -> BigInt:
        return BigInt(await loaders.file_downloads(info.context).load((self.channel_id, self.subdir, self.filename)))

    @strawberry.field(description=DOWNLOADS_DESCRIPTION)
    async def downloads(self, info: Info, period: DownloadPeriod, from_: Annotated[datetime | None, strawberry.argument(
            name="from")] = None, to: datetime | None = None, fill_zeros: bool | None = False) -> DownloadSeries:
        scope = metrics.Scope(self.channel_id, subdir=self.subdir, filename=self.filename)
        return await download_series(info, scope, period, from_, to, fill_zeros)
