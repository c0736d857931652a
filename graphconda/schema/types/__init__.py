"""The GraphQL types, one module per type, each built from its model with `from_model`."""
