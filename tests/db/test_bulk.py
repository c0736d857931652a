"""db/bulk.py: rows inserted in bulk read back exactly as rows inserted through SQLAlchemy do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from graphconda.db.bulk import insert_rows
from graphconda.db.models import Package, PackageFile
from graphconda.services.context import Services
from tests.helpers.channels import make_channel


async def test_bulk_rows_read_back_as_sqlalchemy_inserts_them(services: Services) -> None:
    channel = await make_channel(services, "bulk")
    now = datetime(2026, 12, 1, 20, 0, 0, 123456, tzinfo=UTC)
    async with services.db.write() as session:
        package = Package(channel_id=channel.id, name="café", created_at=now, updated_at=now, about={})
        session.add(package)
        await session.flush()

        def rows(prefix: str) -> list[dict[str, Any]]:
            return [{"package_id": package.id, "filename": f"{prefix}-{i}-0.conda", "name": "café",
                     "version": f"1.{i}", "build": "0", "build_number": i, "size": 10 * i, "md5": "0" * 32,
                     "sha256": f"{i:064x}", "record": '{"name":"café ✓"}', "packed": bytes([i, 0, 255]) if i else None,
                     "v3": bool(i % 2), "timestamp": None if i == 2 else 1_700_000_000_000 + i, "stored": i == 1}
                    for i in range(3)]

        shared = {"channel_id": channel.id, "subdir": "linux-64", "traits": ["a", "b"], "uploader_id": None,
                  "uploaded_at": now}
        await insert_rows(session, PackageFile.__table__, rows("bulk"), shared)  # type: ignore[arg-type]
        await session.execute(insert(PackageFile.__table__), [{**row, **shared} for row in rows("core")])  # type: ignore[attr-defined]
        await insert_rows(session, PackageFile.__table__, [], shared)  # type: ignore[arg-type]
    async with services.db.read() as session:
        found = (await session.scalars(select(PackageFile).order_by(PackageFile.filename))).all()
    columns = [c.key for c in PackageFile.__table__.columns if c.key not in ("id", "filename")]  # type: ignore[attr-defined]
    core = [[getattr(row, c) for c in columns] for row in found if row.filename.startswith("core-")]
    bulk = [[getattr(row, c) for c in columns] for row in found if row.filename.startswith("bulk-")]
    assert len(bulk) == 3 and bulk == core
    assert found[0].uploaded_at == now and found[0].traits == ["a", "b"] and found[1].v3 is True
