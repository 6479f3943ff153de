"""Configuration: pydantic models and YAML loading with one-line errors."""

from harness.config.loading import ConfigError, load_yaml  # noqa: F401
