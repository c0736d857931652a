"""Tests of graphconda.storage: one contract suite for every backend, plus backend specifics."""
