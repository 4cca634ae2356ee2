"""Benchmarks of syncer (see README.md here): run with benchmarks/run, never by pytest."""
