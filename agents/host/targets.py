"""Which ONNX Runtime build runs a job on the host: harness's own or one of
the side-by-side environments (agents/host/runtimes.py).

Each build is one runtime target of the host device: name `onnxruntime`, its
version, its build (the distribution: onnxruntime, onnxruntime-openvino ...)
and the execution providers it offers. A target picks one by `version:`
(exact or prefix), `ep:` (the build must offer it) and, where two builds
share a version, by naming the build as its runtime (`runtime:
onnxruntime-openvino`). The runtime in harness's own environment is the
default: it wins whenever it qualifies.
"""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from agents.host import runtimes
from harness.kernel.eps import short_ep

RUNTIME = "onnxruntime"
# The PyPI builds that bring an EP the plain CPU wheel lacks (onnxruntime.ai
# install pages), for the hint when a target's EP is missing.
BUILD_FOR_EP = {"cuda": "onnxruntime-gpu", "tensorrt": "onnxruntime-gpu", "openvino": "onnxruntime-openvino",
                "qnn": "onnxruntime-qnn", "dml": "onnxruntime-directml"}


@dataclass(frozen=True)
class Build:
    version: str
    build: str  # the distribution that provides the module
    eps: tuple[str, ...]  # short names, in the build's order of preference
    python: Optional[Path] = None  # None: harness's own environment
    runtime_version: str = ""  # onnxruntime.__version__ when it differs from the distribution's

    @property
    def label(self) -> str:
        return f"{self.build} {self.version} [{' '.join(self.eps)}]"


def local_eps(providers: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for p in providers:
        if p in runtimes.NOT_LOCAL_PROVIDERS:
            continue
        s = short_ep(p)
        if s not in out:
            out.append(s)
    return tuple(out)


def own_build() -> tuple[Optional[Build], str]:
    """(the runtime in harness's own environment, "") or (None, why there is none)."""
    try:
        import onnxruntime as ort
    except Exception as exc:  # a broken wheel raises more than ImportError
        return None, f"onnxruntime cannot be imported in harness's environment ({exc})"
    return Build(ort.__version__, installed_build_name(), local_eps(ort.get_available_providers()), None,
                 ort.__version__), ""


def installed_build_name() -> str:
    """Which distribution put the `onnxruntime` module in this environment
    (two at once is a broken environment: the later install overwrote the
    other's files; then just `onnxruntime`)."""
    dists = sorted(d.metadata["Name"].lower() for d in md.distributions()
                   if RUNTIME in (d.read_text("top_level.txt") or "").split())
    return dists[0] if len(dists) == 1 else RUNTIME


def from_template(info: dict) -> Optional[Build]:
    """harness's own build as its warm template described it (forkserver.py's
    ready message), or None when it could not."""
    if not info.get("version") or info.get("providers") is None:
        return None
    return Build(info["version"], info.get("dist") or RUNTIME, local_eps(info["providers"]), None, info["version"])


def build_of(env: runtimes.Environment) -> Build:
    return Build(env.version, env.dist, local_eps(env.providers), env.python, env.runtime_version)


def environment_builds(root: Optional[Path] = None) -> list[Build]:
    return [build_of(e) for e in runtimes.installed(root)]


def _matches(b: Build, version: str) -> bool:
    return not version or any(v == version or v.startswith(version + ".") for v in (b.version, b.runtime_version) if v)


def choose(builds: Sequence[Build], runtime: str, version: str, ep: str) -> tuple[Optional[Build], str, str]:
    """(the build for a target, "", "") or (None, error kind, why none
    qualifies). `builds` comes with harness's own first, which wins when it
    qualifies; among the rest the newest version wins, and a plain
    `onnxruntime` before an accelerator build of the same version."""
    named = [b for b in builds if runtime in (RUNTIME, b.build)]
    if not named:
        return None, "unsupported_target", f"the host driver runs onnxruntime builds, not {runtime!r} " \
                                           f"(here: {describe(builds)})"
    versioned = [b for b in named if _matches(b, version)]
    if not versioned:
        return None, "unsupported_version", (f"{runtime} {version} requested; this host has {describe(named)}; "
                                             f"`harness runtime install {runtime}=={version}` adds it")
    usable = [b for b in versioned if ep in b.eps]
    if not usable:
        hint = f"; `harness runtime install {BUILD_FOR_EP[ep]}` adds one" if ep in BUILD_FOR_EP else ""
        return None, "unsupported_ep", f"execution provider {ep!r} is not offered by {describe(versioned)}{hint}"
    if usable[0].python is None:
        return usable[0], "", ""
    return max(usable, key=lambda b: (runtimes.version_key(b.version), b.build == RUNTIME)), "", ""


def describe(builds: Sequence[Build]) -> str:
    return ", ".join(b.label for b in builds) or "none"
