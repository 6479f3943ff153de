"""Starting an agent from the face: the local agent a run uses when it has
no lab file (in this process, on 127.0.0.1:0, or lent by the resident the
run was forked from: harness/resident/), a resident's kept agent, and
`harness agent serve` (configuration merge, safety warnings, lifecycle).

This is where the controller and the agents meet: the controller is handed
`local_agent(...)` as a callable and sees only an address."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from agents import registry
from harness.kernel import limits
from harness.kernel.configfile import ConfigError

# Local agents kept between runs of this process, by what they were started
# with; each is lent to one run at a time and stopped when the process ends.
_KEPT: dict = {}
_KEPT_LOCK = threading.Lock()
# The socket of the resident this process was forked from (set by
# harness/resident/child.py): its local agents come from there, kept.
RESIDENT: Optional[str] = None


class _FromResident:
    """A resident's kept agent as a run sees it: `.address`; `.stop()` leaves
    it running for the next run (the resident stops it when idle)."""

    def __init__(self, address: str):
        self.address = address

    def stop(self, grace: Optional[float] = None) -> None:
        pass


class _Lent:
    """A kept agent as one run sees it: `.address`; `.stop()` gives it back."""

    def __init__(self, key, agent):
        self._key, self.agent, self.address = key, agent, agent.address

    def stop(self, grace: Optional[float] = None) -> None:
        with _KEPT_LOCK:
            entry = _KEPT.get(self._key)
            if entry is not None and entry[0] is self.agent:
                _KEPT[self._key] = (self.agent, False)


def _stop_kept() -> None:
    with _KEPT_LOCK:
        agents = [a for a, _ in _KEPT.values()]
        _KEPT.clear()
    for a in agents:
        try:
            a.stop(1.0)
        except Exception:
            pass


def _warm(agent) -> None:
    """Ask each driver whether it can run, in the background: the host
    driver then finds its runtime and starts its runners' warm template while
    the controller is still planning (Describe asks the same, later)."""
    def go():
        for drv in list(agent.drivers.values()):
            try:
                drv.available()
            except Exception:
                pass

    threading.Thread(target=go, name="agent-warm", daemon=True).start()


def local_agent(drivers: Optional[Sequence[str]] = None, driver_config: Optional[dict] = None,
                cache_dir: Optional[str] = None, keep: bool = False) -> Callable[[], object]:
    """A callable that starts an agent in this process on 127.0.0.1:0 with
    these drivers (default: registry.LOCAL_DEFAULT) and returns it.

    keep=True: the agent outlives the run and the next run of this process
    started the same way (same drivers, configuration, cache folder and
    HARNESS_CACHE) gets it again, with its warm runners and what its drivers
    cached (placements per model digest, build and options); a run never
    shares it with another run at the same time, and it stops when the
    process exits.

    In a run forked by a resident (harness/resident/), keep=True with the
    default configuration asks the resident instead: its kept agent for these
    drivers, the same configuration in a process of its own on a unix
    socket, lives across runs (and is shared by runs at once, which queue per
    device as on a lab agent). Should the resident give none, the run starts
    its own here."""
    import atexit
    import json
    import os

    def start_it():
        from agents.server import AgentConfig, start  # only when an agent starts here: a lab run never needs it

        agent = start(AgentConfig(listen="127.0.0.1:0", drivers=tuple(drivers or registry.LOCAL_DEFAULT),
                                  driver_config=driver_config or {}, cache_dir=cache_dir))
        _warm(agent)
        return agent

    if not keep:
        return start_it
    if RESIDENT is not None and not driver_config and cache_dir is None:
        return lambda: _from_resident(RESIDENT, tuple(drivers or registry.LOCAL_DEFAULT), start_it)
    key = (tuple(drivers or registry.LOCAL_DEFAULT), json.dumps(driver_config or {}, sort_keys=True, default=str),
           cache_dir, os.environ.get("HARNESS_CACHE"), os.environ.get("TMPDIR"))

    def lend():
        with _KEPT_LOCK:
            entry = _KEPT.get(key)
            if entry is not None and not entry[1]:
                _KEPT[key] = (entry[0], True)
                return _Lent(key, entry[0])
        agent = start_it()
        with _KEPT_LOCK:
            if key in _KEPT:  # another run holds the kept one: this one is its own
                return agent
            if not _KEPT:
                atexit.register(_stop_kept)
            _KEPT[key] = (agent, True)
        return _Lent(key, agent)

    return lend


def _from_resident(path: str, drivers: Sequence[str], fallback: Callable[[], object]):
    from harness.resident.client import ask_agent
    from harness.resident.wire import WireError

    try:
        return _FromResident(ask_agent(path, drivers))
    except (OSError, WireError) as exc:
        logging.getLogger("harness.resident").info("no kept agent from the resident (%s): starting one here", exc)
        return fallback()


def serve_kept(path: str, drivers: Sequence[str]) -> None:
    """A resident's kept local agent (harness/resident/serve.py starts it):
    the embedded agent's configuration, listening on the unix socket `path`
    (this user's only, in the resident's 0700 directory); prints `ready` on stdout once
    it listens; ends on SIGTERM, SIGINT or SIGHUP, or when its resident is
    gone (its parent changes)."""
    import os

    from agents.server import AgentConfig, start

    parent = os.getppid()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    # The socket gRPC binds: this user's only (folders the drivers make while
    # starting stay usable by their owner; runners get the old umask back).
    old = os.umask(0o077)
    try:
        agent = start(AgentConfig(listen=f"unix:{path}", drivers=tuple(drivers), driver_config={}, cache_dir=None))
    finally:
        os.umask(old)
    _warm(agent)
    print("ready", flush=True)
    try:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                break
    finally:
        agent.stop(1.0)


def _custom_ops(cfg, path: Optional[Path]) -> dict:
    """agent.yaml's custom_ops, each library checked now (one line naming the file and the entry)."""
    from agents.options import configured_libraries

    if not cfg or not cfg.custom_ops:
        return {}
    try:
        return {name: str(p) for name, p in configured_libraries(cfg.custom_ops).items()}
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(listen: Optional[str], drivers: Optional[str], token_file: Optional[Path], config: Optional[Path],
          cache_dir: Optional[Path], port_file: Optional[Path], ready: Optional[threading.Event] = None,
          stop: Optional[threading.Event] = None) -> None:
    from agents.agentfile import load_agent_file
    from agents.server import AgentConfig, start

    settings = load_agent_file(config) if config else None
    cfg = settings.file if settings else None
    listen = listen or (cfg.listen if cfg else "127.0.0.1:50051")
    if ":" not in listen:
        raise ConfigError(f"--listen {listen!r}: expected HOST:PORT")
    names = [d.strip() for d in drivers.split(",") if d.strip()] if drivers else (list(settings.drivers) if settings else list(registry.SERVE_DEFAULT))
    tfile = token_file or (Path(cfg.token_file).expanduser() if cfg and cfg.token_file else None)
    token = None
    if tfile:
        try:
            token = tfile.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {tfile}: cannot read ({exc.strerror})") from None
        if not token:
            raise ConfigError(f"--token-file {tfile}: the file is empty")
    tls = cfg.tls.model_dump(exclude_none=True) if cfg and cfg.tls else None
    host = listen.rsplit(":", 1)[0]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    log = logging.getLogger("harness.agent")
    if not _is_loopback(host) and not token and not tls:
        log.warning("listening on %s without a token or TLS: anyone who can reach this port can run models "
                    "here (use --token-file, or tls: in agent.yaml)", listen)
    driver_config = dict(settings.sections) if settings else {}
    try:
        agent = start(AgentConfig(
            listen=listen, drivers=tuple(names), driver_config=driver_config,
            cache_dir=str(cache_dir) if cache_dir else (cfg.cache_dir if cfg else None),
            token=token, tls=tls,
            max_model_bytes=(cfg.max_model_mb * limits.MiB) if cfg and cfg.max_model_mb else limits.MAX_MODEL_BYTES,
            max_queue=(cfg.max_queue if cfg and cfg.max_queue else limits.MAX_QUEUE_PER_DEVICE),
            custom_ops=_custom_ops(cfg, config),
            cache_quota_bytes=(cfg.cache_quota_mb * limits.MiB) if cfg and cfg.cache_quota_mb
            else limits.CACHE_QUOTA_BYTES,
        ))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"--listen {listen}: {exc}") from None
    for name, drv in agent.drivers.items():
        ok, why = drv.available()
        log.info("driver %s: %s", name, "available" if ok else f"unavailable: {why}")
    log.info("agent listening on %s (drivers: %s)", agent.address, ", ".join(names))
    if port_file:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(str(agent.port))
        tmp.replace(port_file)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    if ready:
        ready.set()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("draining: health NOT_SERVING, cancelling running jobs")
        agent.stop()
        log.info("stopped")
