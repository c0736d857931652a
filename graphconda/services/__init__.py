"""The domain layer every transport (HTTP, GraphQL, CLI, jobs) calls."""
