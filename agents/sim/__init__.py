"""The sim driver: simulated devices whose latency follows a configured
distribution, that can drift or fail on purpose, and that take real
wall-clock time. It serves fan-out benchmarks, lab capacity planning
(`harness plan`) and fault tests without hardware; a simulated device can
stand in for an android, ios or browser profile (`match: {driver: sim}`).
"""

from __future__ import annotations

from typing import Any, Mapping

from agents.registry import driver_config
from agents.sim.config import SimConfig as Config
from agents.sim.driver import SimDriver


def create(config: Config | Mapping[str, Any]) -> SimDriver:
    return SimDriver(driver_config("sim", config))
