"""CLI: `graphconda jobs run|list|show|cancel` call the same job services as GraphQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
from click.testing import CliRunner
from sqlalchemy import delete

from graphconda.cli import main
from graphconda.db.models import PackageFile
from graphconda.services import packages
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.settings import Settings
from tests.helpers.channels import chunks, make_channel, package_files
from tests.helpers.packages import build_package


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GRAPHCONDA_")}
    result = CliRunner().invoke(main, args, env={**unset, **env})
    return result.exit_code, result.stdout, result.stderr


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {"GRAPHCONDA_DATABASE__URL": settings.database_url, "GRAPHCONDA_SERVER__DATA_DIR": str(settings.data_dir),
           "GRAPHCONDA_JOBS__MODULES": '["tests.jobs.kinds"]', "GRAPHCONDA_JOBS__POLL_SECONDS": "0.1",
           "GRAPHCONDA_JOBS__HEARTBEAT_SECONDS": "0.2", "GRAPHCONDA_JOBS__STALE_SECONDS": "2"}
    return await anyio.to_thread.run_sync(invoke, list(args), env)


async def test_run_wait_show_list(services: Services, settings: Settings, tmp_path: Path) -> None:
    await make_channel(services, "main")
    paths = [build_package(tmp_path, "alpha", "1.0"), build_package(tmp_path, "beta", "1.0", subdir="linux-64")]
    for path in paths:
        await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    async with services.db.write() as session:
        await session.execute(delete(PackageFile))

    code, out, err = await cli(settings, "jobs", "run", "reindex", "--channel", "main", "--wait")
    assert code == 0, err
    job_id = out.strip()
    assert job_id.isdigit()
    assert {f.filename for f in await package_files(services)} == {p.name for p in paths}
    code, out, err = await cli(settings, "jobs", "show", job_id, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["kind"] == "reindex" and shown["channel"] == "main" and shown["status"] == "succeeded"
    assert shown["progress"] == {"done": 2, "total": 2, "message": "2 added, 0 removed, 0 skipped"}
    code, out, _ = await cli(settings, "jobs", "show", job_id)
    assert "status:    succeeded" in out and "2 added" in out

    code, out, err = await cli(settings, "jobs", "run", "cleanup", "--arg", "dry_run=true", "--wait")
    assert code == 0, err
    code, out, _ = await cli(settings, "jobs", "list", "--json")
    listed = json.loads(out)
    assert [(j["kind"], j["status"]) for j in listed] == [("cleanup", "succeeded"), ("reindex", "succeeded")]
    assert listed[0]["args"] == {"dry_run": True}
    code, out, _ = await cli(settings, "jobs", "list", "--channel", "main")
    assert code == 0 and "reindex" in out and "cleanup" not in out
    code, out, _ = await cli(settings, "jobs", "list", "--status", "failed")
    assert out.strip() == "no jobs"


async def test_failed_job_exits_non_zero(settings: Settings, services: Services) -> None:
    code, out, err = await cli(settings, "jobs", "run", "test_steps", "--arg", "steps=2", "--arg", "delay=0",
                               "--arg", "fail=error", "--wait")
    assert code == 1 and out.strip().isdigit()
    assert err.strip().endswith("error: job failed: RuntimeError: boom")


async def test_bad_input_and_cancel(settings: Settings, services: Services) -> None:
    for args, message in [
        (["nope"], "unknown job kind 'nope'"),
        (["cleanup", "--arg", "dry_run=maybe"], "argument 'dry_run' of job cleanup must be a boolean"),
        (["cleanup", "--arg", "force=1"], "job cleanup has no argument 'force'"),
        (["reindex"], "job reindex runs on a channel"),
        (["reindex", "--channel", "absent"], "channel not found"),
    ]:
        code, _, err = await cli(settings, "jobs", "run", *args)
        assert code == 1 and message in err, err
    code, out, _ = await cli(settings, "jobs", "list", "--json")
    assert json.loads(out) == []

    code, out, err = await cli(settings, "jobs", "run", "test_steps", "--arg", "steps=1000")
    assert code == 0, err
    job_id = out.strip()
    code, out, err = await cli(settings, "jobs", "cancel", job_id)
    assert code == 0 and out.strip() == f"job {job_id} cancelled"
    code, _, err = await cli(settings, "jobs", "cancel", job_id)
    assert code == 1 and "already cancelled" in err
    for command in (["show", "99999"], ["cancel", "abc"]):
        code, _, err = await cli(settings, "jobs", *command)
        assert code == 1 and "not found" in err
