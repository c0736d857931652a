"""graphconda test suite."""
