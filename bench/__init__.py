"""Benchmarks of boomi-listener-exporter against its Boomi API simulator (see bench/README.md)."""
