"""boomi-listener-exporter: a Prometheus exporter for Boomi listener status."""

__version__ = "0.1.0"
