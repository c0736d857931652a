"""Database layer tests."""
