"""Every driver the agent can load, by name, and the drivers loaded by default.

A driver is a package under agents/ that exports two names (see
docs/writing-a-driver.md):

  Config    a pydantic model of its section of agent.yaml; unknown keys are
            errors. It is validated when the agent file is read and again
            when the driver is created, so a bad value is one line.
  create    create(config: Config) -> a contract.Driver.

Adding a driver is its package plus one line in DRIVERS. Packages are
imported only when a driver is named; the heavy imports (onnxruntime,
playwright, adbutils, coremltools) happen later still, inside the driver.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping

from pydantic import BaseModel

from agents.contract import Driver
from harness.kernel.configfile import ConfigError, validate_section

__all__ = ["DRIVERS", "SERVE_DEFAULT", "LOCAL_DEFAULT", "driver_config", "load_driver"]

DRIVERS = {
    "host": "agents.host",        # ONNX Runtime on this machine
    "browser": "agents.browser",  # Chromium through Playwright, ONNX Runtime Web
    "android": "agents.android",  # phones over adb, onnxruntime_perf_test
    "ios": "agents.ios",          # Macs, iPhones and simulators, Core ML
    "sim": "agents.sim",          # simulated devices that take real time
}

# `harness agent serve` without --drivers or a drivers: key.
SERVE_DEFAULT = ("host",)
# The local agent a run starts when no lab file is given; a driver that
# cannot run here (no Chromium, no Mac) reports why and adds no devices.
LOCAL_DEFAULT = ("host", "browser")


def _package(name: str) -> ModuleType:
    module_name = DRIVERS.get(name)
    if module_name is None:
        raise ConfigError(f"unknown driver {name!r} (known: {', '.join(sorted(DRIVERS))})")
    return importlib.import_module(module_name)


def driver_config(name: str, section: Mapping[str, Any] | BaseModel | None = None) -> BaseModel:
    """A driver's section of agent.yaml, validated by the driver's own Config."""
    model = _package(name).Config
    if isinstance(section, model):
        return section
    return validate_section(name, dict(section or {}), model)


def load_driver(name: str, section: Mapping[str, Any] | BaseModel | None = None) -> Driver:
    """Construct a driver by name from its section. A bad name or a bad
    section is a ConfigError (a ValueError) with one line."""
    return _package(name).create(driver_config(name, section))
