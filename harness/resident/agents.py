"""A resident's kept local agents: one process per driver set
(agent_start.serve_kept), started on a run's first request for it, lent by
address to every later run, stopped with the resident. A process of its own
because an agent is a server with threads, and the resident forks."""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from harness.kernel import limits

AGENT_BOOT = ("import sys; sys.path[:] = sys.argv[3:]; from harness.agent_start import serve_kept; "
              "serve_kept(sys.argv[1], sys.argv[2].split(','))")
_DRIVER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass
class Agent:
    drivers: list
    path: str
    proc: subprocess.Popen
    since: float
    ready: bool = False
    waiters: list = field(default_factory=list)

    @property
    def address(self) -> str:
        return "unix:" + self.path


class KeptAgents:
    """The agents by driver set; their stdout pipes are watched by the
    resident's selector (data ("agent", key)): `ready` is their one line."""

    def __init__(self, directory: str, key: str, sel: selectors.BaseSelector,
                 reply: Callable[[socket.socket, dict], None]):
        self.dir, self.key, self.sel, self._reply = directory, key, sel, reply
        self.agents: dict[str, Agent] = {}

    def lend(self, conn: socket.socket, spec: dict) -> None:
        drivers = spec.get("drivers")
        if not isinstance(drivers, list) or not drivers or not all(isinstance(d, str) and _DRIVER.match(d)
                                                                  for d in drivers):
            self._reply(conn, {"error": f"drivers {drivers!r}: expected driver names"})
            return
        akey = ",".join(drivers)
        agent = self.agents.get(akey)
        if agent is None or agent.proc.poll() is not None:
            if agent is not None:
                self.drop(akey, "it had exited")
            try:
                agent = self._spawn(akey, drivers)
            except OSError as exc:
                self._reply(conn, {"error": f"cannot start an agent: {exc}"})
                return
        if agent.ready:
            self._reply(conn, {"address": agent.address})
        else:
            agent.waiters.append(conn)

    def _spawn(self, akey: str, drivers: list) -> Agent:
        path = os.path.join(self.dir, f"{self.key}-a{hashlib.sha256(akey.encode()).hexdigest()[:8]}.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        flags = subprocess._args_from_interpreter_flags()
        proc = subprocess.Popen([sys.executable, *flags, "-c", AGENT_BOOT, path, akey, *sys.path], cwd="/",
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True,
                                close_fds=True)
        agent = Agent(drivers, path, proc, time.monotonic())
        self.agents[akey] = agent
        self.sel.register(proc.stdout, selectors.EVENT_READ, ("agent", akey))
        print(f"agent {akey}: pid {proc.pid} on {path}", file=sys.stderr, flush=True)
        return agent

    def output(self, akey: str) -> None:
        agent = self.agents.get(akey)
        if agent is None:
            return
        data = os.read(agent.proc.stdout.fileno(), 4096)
        if not data:
            self.drop(akey, f"it exited ({agent.proc.wait()})")
            return
        if b"ready" in data and not agent.ready:
            agent.ready = True
            for w in agent.waiters:
                self._reply(w, {"address": agent.address})
            agent.waiters.clear()

    def drop(self, akey: str, why: str) -> None:
        agent = self.agents.pop(akey)
        print(f"agent {akey}: dropped, {why}", file=sys.stderr, flush=True)
        for w in agent.waiters:
            self._reply(w, {"error": f"the kept agent did not start: {why} (see {self.key}.log)"})
        if agent.proc.stdout is not None:
            try:
                self.sel.unregister(agent.proc.stdout)
            except (KeyError, ValueError):
                pass
            agent.proc.stdout.close()
        self._end(agent)

    def watch(self) -> None:
        now = time.monotonic()
        for akey, a in list(self.agents.items()):
            if not a.ready and now - a.since > limits.RESIDENT_AGENT_START_S:
                self.drop(akey, f"not listening after {limits.RESIDENT_AGENT_START_S:g} s")

    def starting(self) -> bool:
        return any(a.waiters for a in self.agents.values())

    @staticmethod
    def _end(agent: Agent) -> None:
        if agent.proc.poll() is None:
            agent.proc.terminate()
            try:
                agent.proc.wait(limits.RESIDENT_AGENT_STOP_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(agent.proc.pid, signal.SIGKILL)  # its session: its runners with it
                except OSError:
                    pass
                agent.proc.wait()
        try:
            os.unlink(agent.path)
        except FileNotFoundError:
            pass


    def status(self) -> list:
        return [{"drivers": a.drivers, "pid": a.proc.pid, "address": a.address, "ready": a.ready}
                for a in self.agents.values()]

    def close_in_child(self) -> None:
        """In a forked run: the pipes and waiting callers are the resident's."""
        for a in self.agents.values():
            if a.proc.stdout is not None:
                a.proc.stdout.close()
            for w in a.waiters:
                w.close()
        self.agents.clear()

    def stop_all(self) -> None:
        for akey in list(self.agents):
            self.drop(akey, "the resident is stopping")
