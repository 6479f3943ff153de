"""agent.yaml: the configuration of `harness agent serve --config FILE`.

Every key also has a flag; flags win. Drivers and their sections are
written either way:

    drivers:                       # a mapping: each driver with its section
      android: {runners: {...}}
      browser: {executable: /usr/bin/chromium}

    drivers: [android, browser]    # a list, with each section under the
    android: {runners: {...}}      # driver's name at the top level
    browser: {executable: /usr/bin/chromium}

Each section is checked by its driver's own Config (agents/registry.py)
when the file is read: one line naming the file, the key and what was
expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from pydantic import Field

from agents import registry
from harness.kernel.configfile import ConfigError, Strict, read_yaml, validate


class TlsServer(Strict):
    cert: str
    key: str
    client_ca: Optional[str] = None


class AgentFile(Strict):
    listen: str = "127.0.0.1:50051"
    drivers: Union[list[str], dict[str, Optional[dict[str, Any]]]] = Field(
        default_factory=lambda: list(registry.SERVE_DEFAULT))
    token_file: Optional[str] = None
    cache_dir: Optional[str] = None
    tls: Optional[TlsServer] = None
    max_model_mb: Optional[int] = Field(None, gt=0)
    max_queue: Optional[int] = Field(None, gt=0)
    # Custom-op libraries a target may name: {name: absolute path} (docs/lab.md).
    custom_ops: dict[str, str] = Field(default_factory=dict)
    # The model cache's quota in MiB (default: harness.kernel.limits.CACHE_QUOTA_BYTES).
    cache_quota_mb: Optional[int] = Field(None, gt=0)


class AgentSettings(Strict):
    """agent.yaml as the agent uses it: driver names in order, and each
    named driver's validated section."""

    file: AgentFile
    drivers: tuple[str, ...]
    sections: dict[str, Any]  # driver name -> its Config instance


def load_agent_file(path: Path) -> AgentSettings:
    source = str(path)
    data = read_yaml(Path(path))
    if isinstance(data, dict):
        data = dict(data)
        top = {name: data.pop(name) for name in list(data) if name in registry.DRIVERS}
    else:
        top = {}
    if isinstance(data, dict) and isinstance(data.get("drivers"), str):
        raise ConfigError(f"{source}: drivers: expected a list of driver names or a mapping of driver -> section, "
                          f"got {data['drivers']!r}")
    af = validate(source, data, AgentFile)
    if isinstance(af.drivers, dict):
        both = sorted(set(af.drivers) & set(top))
        if both:
            raise ConfigError(f"{source}: {both[0]}: given both under drivers: and at the top level; keep one")
        names, raw = tuple(af.drivers), {**top, **{k: v or {} for k, v in af.drivers.items()}}
    else:
        names, raw = tuple(af.drivers), top
    unknown = [n for n in names if n not in registry.DRIVERS]
    if unknown:
        raise ConfigError(f"{source}: drivers: unknown driver {unknown[0]!r} "
                          f"(known: {', '.join(sorted(registry.DRIVERS))})")
    prefix = "drivers." if isinstance(af.drivers, dict) else ""
    sections = {}
    for name in dict.fromkeys(names + tuple(raw)):
        try:
            sections[name] = registry.driver_config(name, raw.get(name))
        except ConfigError as exc:  # "sim: devices: expected a list"
            raise ConfigError(f"{source}: {prefix}{exc}") from None
    return AgentSettings(file=af, drivers=names, sections=sections)
