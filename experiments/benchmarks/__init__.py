"""Benchmarks and diagnosis scripts, run from a checkout (``python -m
experiments.benchmarks.<name>``); not part of the installed package."""
