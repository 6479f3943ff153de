"""The host driver: ONNX Runtime on the agent's own machine.

Every job runs in a child process (`agents.host.runner`) in its own process
group, so a runtime crash or hang costs that job only, a timeout or cancel
kills the whole tree, and the child's peak memory is the model's alone. The
child may run in a runtime environment that holds only an ONNX Runtime build
and numpy (agents/host/runtimes.py), so importing this package must need no
more than that: the config model (pydantic) and the driver load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.host.config import HostConfig as Config
    from agents.host.driver import HostDriver


def __getattr__(name: str) -> Any:
    # PEP 562: `agents.host.Config` without importing it for the runner child.
    if name == "Config":
        from agents.host.config import HostConfig

        return HostConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create(config: "Config") -> "HostDriver":
    from agents.host.driver import HostDriver

    return HostDriver(config.model_dump(exclude_unset=True))
