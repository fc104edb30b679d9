"""Benchmarks: a side room that only the CLI imports."""
