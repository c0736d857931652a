"""The dashboard: static files from web/ that talk to /graphql only."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

# web/ sits beside the package in the checkout (graphconda installs editable from it).
WEB_DIR = Path(__file__).resolve().parents[2] / "web"


async def index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Mount("/web", app=StaticFiles(directory=WEB_DIR, check_dir=False), name="web"),
]
