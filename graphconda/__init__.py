"""graphconda: a conda package server with a GraphQL API."""

__version__ = "0.1.0"
