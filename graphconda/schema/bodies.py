"""What /graphql accepts as a request body, and how it refuses the rest (a 4xx with a GraphQL-style error).

A body is UTF-8 JSON: an object, with `variables` and `extensions` nested at most
`MAX_JSON_NESTING` deep (the same for GET parameters, multipart `operations` and `map`, and
websocket messages, which are closed with 4400 when too deep).
Without that bound, `[[[[...]]]]` in 1 MiB exhausts the stack of the JSON decoder or of the
code walking its result (a RecursionError, so a 500). In a multipart upload each file part
fills exactly one variable: a part mapped to 1,000 paths would run 1,000 uploads of one file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cross_web import HTTPException
from starlette.responses import JSONResponse

# Our inputs nest four deep at most (createApiKey's scopes); Apollo's extensions two.
MAX_JSON_NESTING = 32
CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "TOO_LARGE"}


def error_response(status: int, message: str) -> JSONResponse:
    """A request refused before any operation ran: GraphQL-over-HTTP's `errors` without `data`."""
    code = CODES.get(status, "BAD_REQUEST")
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status)


def _nesting(value: object) -> int:
    """How deep lists and objects nest in `value`; without recursion, however deep they go."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            current = current.values()
        elif not isinstance(current, list):
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_JSON_NESTING:
            break
        stack.extend((item, level + 1) for item in current)
    return deepest


class RefusedJSON(json.JSONDecodeError):
    """JSON we will not read. A JSONDecodeError, so that Strawberry's websocket handlers treat it
    as a message that is not JSON (closing with 4400); over HTTP the view answers 400 with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "", 0)
        self.reason = reason


def decode_json(data: str | bytes) -> object:
    """JSON from a body, a GET parameter, a multipart field or a websocket message."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RefusedJSON("the request body must be JSON encoded in UTF-8") from None
    too_deep = f"JSON nested too deeply: lists and objects nest at most {MAX_JSON_NESTING} levels"
    try:
        value = json.loads(data)
    except RecursionError:
        raise RefusedJSON(too_deep) from None
    if _nesting(value) > MAX_JSON_NESTING:
        raise RefusedJSON(too_deep)
    return value


def require_object_body(body: bytes) -> None:
    """A JSON body must be an object (a list is a batch, which Strawberry refuses itself).

    Looks at the first byte only: the body is parsed once, later, by Strawberry.
    """
    start = body.lstrip()[:1]
    if start and start.isascii() and start not in b"{[":  # not ASCII: decode_json says "UTF-8"
        raise HTTPException(400, "the request body must be a JSON object with a `query` (and optional "
                                 "`variables`, `operationName`, `extensions`)")


def check_files_map(files_map: Mapping[str, list[str]]) -> None:
    """One file part per variable, and one variable per file part."""
    filled: dict[str, str] = {}
    for part, paths in files_map.items():
        if len(paths) != 1:
            raise HTTPException(400, f"the multipart `map` maps file part {part[:64]!r} to {len(paths)} paths; "
                                     "map each file part to exactly one variable")
        if paths[0] in filled:
            raise HTTPException(400, f"the multipart `map` maps file parts {filled[paths[0]][:64]!r} and "
                                     f"{part[:64]!r} to the same path {paths[0][:200]!r}")
        filled[paths[0]] = part
