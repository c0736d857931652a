"""Quetz upload routes (handlers in graphconda/http/upload.py): raw body by filename, multipart into a channel.

Mounted here so that they answer like the rest of the Quetz API: an upload into a mirror or
proxy channel is Quetz's 405.
"""

from __future__ import annotations

from starlette.routing import Route

from graphconda.http.quetz.common import quetz
from graphconda.http.upload import quetz_files, quetz_upload

routes = [
    Route("/api/channels/{channel}/upload/{filename:path}", quetz(quetz_upload), methods=["POST"]),
    Route("/api/channels/{channel}/files", quetz(quetz_files), methods=["POST"]),
    Route("/api/channels/{channel}/files/", quetz(quetz_files), methods=["POST"]),
]
