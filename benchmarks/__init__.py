"""Throughput and memory benchmarks: the JAX student against transformers + peft, in one process run.

Run them as modules from the repository root, e.g. `python -m benchmarks.train_step`; results are in
docs/benchmarks.md.
"""
