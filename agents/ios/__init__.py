"""The ios driver: Core ML on a Mac, its connected iPhones and iPads, and its
booted simulators, with per-operation compute-device placement from Core
ML's compute plan; ONNX Runtime (CoreML EP) on the Mac itself.

Agent config: `ios:` in agent.yaml (agents/ios/config.py).

Off macOS, `available()` is false and says what is needed.
"""

from __future__ import annotations

from typing import Any, Mapping

from agents.ios.config import IOSConfig as Config
from agents.ios.driver import IOSDriver
from agents.registry import driver_config


def create(config: Config | Mapping[str, Any]) -> IOSDriver:
    return IOSDriver(driver_config("ios", config).model_dump(exclude_unset=True))
