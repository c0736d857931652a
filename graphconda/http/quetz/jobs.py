"""Quetz job routes: list (`status`, `skip`, `limit`), read one, cancel one (`PATCH {"status": "cancelled"}`).

graphconda's job statuses map onto Quetz's: queued = pending, running, succeeded = success,
failed, cancelled. Jobs are seen by whoever may run them (channel owners and maintainers,
server staff), others get 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphconda.errors import InvalidInputError, NotFoundError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.quetz.common import OUR_STATUS, job_json, json_body, ok, paginated, paging, parse_id, quetz, text
from graphconda.services import catalog, jobs


def _job_id(request: Request) -> int:
    job_id = parse_id(request.path_params["job_id"])
    if job_id is None:
        raise NotFoundError("job not found")
    return job_id


async def list_jobs(request: Request) -> Response:
    """Jobs the caller may see, newest first; `status` (repeatable) defaults to pending and running."""
    wanted = request.query_params.getlist("status") or ["pending", "running"]
    unknown = [s for s in wanted if s not in OUR_STATUS]
    if unknown:
        raise InvalidInputError(f"status must be one of {', '.join(OUR_STATUS)}", field="status")
    skip, limit = paging(request)
    page = await catalog.page_jobs(services_of(request), actor_of(request),
                                   statuses=[OUR_STATUS[s] for s in wanted], skip=skip, limit=limit)
    return ok(paginated(page, [job_json(run, name) for run, name in page.items]))


async def get_job(request: Request) -> Response:
    """One job."""
    services, actor = services_of(request), actor_of(request)
    summary = await jobs.describe_job(services, actor, _job_id(request))
    run = await jobs.get_job(services, actor, _job_id(request))  # describe_job checked it may be seen
    return ok(job_json(run, summary["channel"]))


async def patch_job(request: Request) -> Response:
    """Cancel a job: `{"status": "cancelled"}` (the only change graphconda takes)."""
    body = await json_body(request)
    if text(body, "status") != "cancelled":
        raise InvalidInputError("only {\"status\": \"cancelled\"} is supported", field="status")
    await jobs.cancel_job(services_of(request), actor_of(request), _job_id(request))
    return ok(None)


routes = [
    Route("/api/jobs", quetz(list_jobs), methods=["GET"]),
    Route("/api/jobs/{job_id}", quetz(get_job), methods=["GET"]),
    Route("/api/jobs/{job_id}", quetz(patch_job), methods=["PATCH"]),
]
