"""Configuration: pydantic models and YAML loading with one-line errors."""

from harness.kernel.configfile import ConfigError, load_yaml  # noqa: F401
