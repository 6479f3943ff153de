"""Connecting to agents: the lab file's agents, or an embedded default agent
started in this process on 127.0.0.1:0 (the same gRPC path as a lab)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness._proto.v1 import agent_pb2 as pb
from harness.config.models import Lab
from harness.controller.client import AgentClient, AgentError, load_credentials
from harness.controller.plan import AgentDevice, AgentRuntime
from harness.wire import DEVICE_STATE_FROM_PB

log = logging.getLogger("harness.controller")

# Drivers the embedded agent loads when no lab is given; a driver that cannot
# run here (no Chromium, no Mac) reports why and contributes no devices.
EMBEDDED_DRIVERS = ("host", "browser")


@dataclass
class Connected:
    clients: dict[str, AgentClient] = field(default_factory=dict)
    devices: list[AgentDevice] = field(default_factory=list)
    drivers: dict[str, list[tuple[str, bool, str]]] = field(default_factory=dict)  # agent -> (driver, ok, reason)
    embedded: Optional[object] = None  # agents.server.RunningAgent

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        if self.embedded is not None:
            self.embedded.stop()


def devices_from_describe(agent: str, resp: pb.DescribeResponse) -> list[AgentDevice]:
    out = []
    for d in resp.devices:
        out.append(AgentDevice(
            agent=agent, id=d.id, driver=d.driver, platform=d.platform, facts=dict(d.facts),
            runtimes=tuple(AgentRuntime(r.name, r.version, tuple(r.eps), tuple(r.formats)) for r in d.runtimes),
            state=DEVICE_STATE_FROM_PB.get(d.state, "unknown"), state_reason=d.state_reason,
        ))
    return out


def start_embedded(drivers: Sequence[str] = EMBEDDED_DRIVERS, driver_config: Optional[dict] = None,
                   cache_dir: Optional[str] = None):
    # Imported here: only the embedded default needs the agent side.
    from agents.server import AgentConfig, start

    return start(AgentConfig(listen="127.0.0.1:0", drivers=tuple(drivers),
                             driver_config=driver_config or {}, cache_dir=cache_dir))


def connect(lab: Optional[Lab], lab_path: Optional[Path], *, embedded_drivers: Sequence[str] = EMBEDDED_DRIVERS,
            embedded_config: Optional[dict] = None, cache_dir: Optional[str] = None) -> Connected:
    conn = Connected()
    try:
        if lab is None:
            conn.embedded = start_embedded(embedded_drivers, embedded_config, cache_dir)
            conn.clients["local"] = AgentClient("local", conn.embedded.address)
        else:
            base = lab_path.parent if lab_path else Path.cwd()
            for a in lab.agents:
                creds = load_credentials(a.token_file, a.tls.model_dump() if a.tls else None, base)
                conn.clients[a.name] = AgentClient(a.name, a.address, creds)

        def describe(item):
            name, client = item
            client.wait_ready()
            return name, client.describe()

        with ThreadPoolExecutor(max_workers=max(1, len(conn.clients))) as pool:
            for name, resp in pool.map(describe, list(conn.clients.items())):
                conn.devices.extend(devices_from_describe(name, resp))
                conn.drivers[name] = [(d.name, d.available, d.reason) for d in resp.drivers]
        return conn
    except BaseException:
        conn.close()
        raise
