"""Tests for graphconda.conda: identifier rules, archives, records, published index files."""
