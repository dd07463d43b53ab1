"""Test-only code: the synthetic ranking task, the demo-data tokenizer and plain reference implementations.

Tests, benchmarks and tools import it; product code never does (tests/test_layering.py checks it), so
nothing here is a dependency of `r2r` or of the library.
"""
