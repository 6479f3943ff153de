"""harness: a device-lab benchmark harness for edge ML."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
