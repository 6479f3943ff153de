"""Connecting to agents: the lab file's agents, or a local agent on
127.0.0.1:0 (the same gRPC path as a lab).

The controller never imports the agent side: a local agent is started by
the `start_local` callable the face passes in (harness.agent_start), and
from then on it is an address like any other."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from harness._proto.v1 import agent_pb2 as pb
from harness.config.schema import Lab
from harness.controller.client import AgentClient, AgentError, load_credentials
from harness.controller.planner import AgentDevice, AgentRuntime
from harness.kernel.configfile import ConfigError
from harness.kernel.wire import DEVICE_STATE_FROM_PB

log = logging.getLogger("harness.controller")

# Starts an agent on loopback and returns it: `.address` to dial, `.stop()`.
LocalAgent = Callable[[], Any]


@dataclass
class Connected:
    clients: dict[str, AgentClient] = field(default_factory=dict)
    devices: list[AgentDevice] = field(default_factory=list)
    drivers: dict[str, list[tuple[str, bool, str]]] = field(default_factory=dict)  # agent -> (driver, ok, reason)
    embedded: Optional[Any] = None  # what a LocalAgent returned

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        if self.embedded is not None:
            self.embedded.stop()


class EarlyAgent:
    """A local agent started in the background while the run reads its
    files; calling it waits for it (a LocalAgent itself), `discard` stops it."""

    def __init__(self, start_local: LocalAgent):
        self._box: dict = {}
        self._thread = threading.Thread(target=self._start, args=(start_local,), name="local-agent", daemon=True)
        self._thread.start()

    def _start(self, start_local: LocalAgent) -> None:
        try:
            self._box["agent"] = start_local()
        except BaseException as exc:  # raised where the run asks for the agent
            self._box["error"] = exc

    def __call__(self):
        self._thread.join()
        if "error" in self._box:
            raise self._box["error"]
        return self._box["agent"]

    def discard(self) -> None:
        self._thread.join()
        agent = self._box.get("agent")
        if agent is not None:
            agent.stop()


def devices_from_describe(agent: str, resp: pb.DescribeResponse) -> list[AgentDevice]:
    out = []
    for d in resp.devices:
        out.append(AgentDevice(
            agent=agent, id=d.id, driver=d.driver, platform=d.platform, facts=dict(d.facts),
            runtimes=tuple(AgentRuntime(r.name, r.version, tuple(r.eps), tuple(r.formats), r.build) for r in d.runtimes),
            state=DEVICE_STATE_FROM_PB.get(d.state, "unknown"), state_reason=d.state_reason,
        ))
    return out


def connect(lab: Optional[Lab], lab_path: Optional[Path], *, start_local: Optional[LocalAgent] = None) -> Connected:
    """Clients for the lab's agents (or the local one), each described once."""
    conn = Connected()
    try:
        if lab is None:
            if start_local is None:
                raise ConfigError("no lab file given (--lab) and no local agent to start")
            conn.embedded = start_local()
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
