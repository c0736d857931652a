"""Write the GraphQL schema (SDL) to schema.graphql at the repository root, or check it is current.

Usage: python scripts/export_schema.py [--check]

The file is generated from the code so that every API change shows up in review;
tests/schema/test_schema_file.py fails when the served schema and the file differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from graphconda.schema import build_schema
from graphconda.settings import load_settings

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def schema_sdl() -> str:
    """The SDL of the schema the app serves (limits do not change the types)."""
    return build_schema(load_settings(environ={})).as_str() + "\n"


def main(argv: list[str]) -> int:
    sdl = schema_sdl()
    if "--check" in argv:
        if not SCHEMA_FILE.exists() or SCHEMA_FILE.read_text(encoding="utf-8") != sdl:
            print(f"{SCHEMA_FILE.name} is out of date: run python scripts/export_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(sdl, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
