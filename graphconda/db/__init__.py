"""Persistence: the engines, the tables and the migrations."""

from graphconda.db.engine import Database, backend_name, redact

__all__ = ["Database", "backend_name", "redact"]
