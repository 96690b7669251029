"""Unit tests of the pure compilers (request -> MongoDB filter, plan, pipeline)."""
