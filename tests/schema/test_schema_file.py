"""schema.graphql is the API contract in review: it must match what the server serves."""

from __future__ import annotations

from pathlib import Path

import httpx2
from graphql import build_client_schema, build_schema, get_introspection_query, lexicographic_sort_schema, print_schema

from graphconda.schema import build_schema as build_graphconda_schema
from graphconda.settings import Settings

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"
REGENERATE = "schema.graphql is out of date: run `python scripts/export_schema.py` and commit the file"


async def test_served_schema_matches_schema_graphql(client: httpx2.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": get_introspection_query(descriptions=True)})
    assert response.status_code == 200
    served = print_schema(lexicographic_sort_schema(build_client_schema(response.json()["data"])))
    committed = print_schema(lexicographic_sort_schema(build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))))
    assert served == committed, REGENERATE


def test_schema_graphql_is_exactly_what_the_script_writes(settings: Settings) -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == build_graphconda_schema(settings).as_str() + "\n", REGENERATE
