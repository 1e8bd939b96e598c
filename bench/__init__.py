"""Benchmarks of the performance promises in the multi-model guide; run ``python bench/run.py``."""
