"""The host driver: ONNX Runtime on the agent's own machine.

Every job runs in a child process (`agents.host.runner`) in its own process
group, so a runtime crash or hang costs that job only, a timeout or cancel
kills the whole tree, and the child's peak memory is the model's alone.
"""

from __future__ import annotations

from typing import Any, Mapping

from agents.host.driver import HostDriver


def create(config: Mapping[str, Any]) -> HostDriver:
    return HostDriver(config)
