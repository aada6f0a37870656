"""Benchmarks of schedules and comparisons with peer tools (ZigZag)."""
