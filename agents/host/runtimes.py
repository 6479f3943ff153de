"""ONNX Runtime builds and versions side by side on a host, one environment each.

`onnxruntime`, `onnxruntime-gpu`, `-openvino`, `-qnn`, `-directml` ... all
provide the same `onnxruntime` module, so two of them cannot share one Python
environment, and harness's own environment holds at most one. The host
runner needs only a runtime and numpy, so each build lives in its own virtual
environment made from the package index:

    <cache>/ort-python/<distribution>-<version>/     (cache: $HARNESS_CACHE or ~/.cache/harness)
        bin/python ...                               the environment (python -m venv)
        installed.json                               written last: what the build offers

`installed.json` is written only after the new environment has imported the
runtime and listed its providers, so a half-finished install never looks like
a runtime, and the agent reads it without starting the build (Describe stays
fast). Packages come through the environment's own pip, so the index, proxies
and mirrors configured for pip apply, and pip's wheel cache makes a reinstall
cheap.

Pure file work and subprocesses only: this module never imports onnxruntime.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from harness.kernel import limits

# Distributions that provide the `onnxruntime` module (PyPI project names).
# Anything else is refused: the command installs runtimes, not arbitrary packages.
_DIST = re.compile(r"^onnxruntime(-[a-z0-9]+)*$")
# PEP 440 release versions as ONNX Runtime publishes them (1.20.1, 1.24.1,
# 2.7.0, 1.23.0.dev20250101, 1.8.0rc1); a shorter one (1.20) is a prefix.
_VERSION = re.compile(r"^\d+(\.\d+){0,3}((a|b|rc)\d+)?(\.?(post|dev)\d+)?$")
MARKER = "installed.json"
# Providers listed by every build that do not run a model on this machine's
# hardware (the Azure EP calls a remote endpoint).
NOT_LOCAL_PROVIDERS = frozenset({"AzureExecutionProvider"})

# What the new environment prints about its runtime: run with that
# environment's python, so it sees only that build.
_PROBE = r"""
import importlib.metadata as md, json, sys
import onnxruntime as ort
dists = {d.metadata["Name"].lower(): d.version for d in md.distributions()
         if "onnxruntime" in (d.read_text("top_level.txt") or "").split()}
print(json.dumps({"version": ort.__version__, "providers": list(ort.get_available_providers()),
                  "build_info": ort.get_build_info() if hasattr(ort, "get_build_info") else "",
                  "python": sys.version.split()[0], "dists": dists}))
"""


class RuntimeEnvError(Exception):
    """An install, lookup or removal failure, phrased for the user."""


@dataclass(frozen=True)
class Spec:
    dist: str
    version: str = ""  # exact (1.20.1) or prefix (1.20); "" = the newest

    @property
    def exact(self) -> bool:
        return self.version.count(".") >= 2

    def requirement(self) -> str:
        if not self.version:
            return self.dist
        return f"{self.dist}=={self.version}" if self.exact else f"{self.dist}=={self.version}.*"

    def __str__(self) -> str:
        return f"{self.dist}=={self.version}" if self.version else self.dist


@dataclass(frozen=True)
class Environment:
    dist: str  # the PyPI distribution: onnxruntime, onnxruntime-openvino ...
    version: str  # the distribution's version (what `==VERSION` names)
    path: Path
    providers: tuple[str, ...] = ()  # ONNX Runtime's long names
    build_info: str = ""
    # onnxruntime.__version__; the same as `version` for Microsoft's and
    # Intel's builds, not for every build (onnxruntime-qnn numbers its own).
    runtime_version: str = ""
    fetched: bool = field(default=False, compare=False)  # False: it was there already

    @property
    def python(self) -> Path:
        return self.path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    @property
    def name(self) -> str:
        return self.path.name


def parse_spec(text: str) -> Spec:
    """`onnxruntime-openvino==1.24.1`, `onnxruntime==1.20`, `onnxruntime`."""
    dist, sep, version = str(text).strip().partition("==")
    dist = dist.strip().lower().replace("_", "-")
    version = version.strip()
    if not _DIST.match(dist):
        raise RuntimeEnvError(f"{text!r}: expected an ONNX Runtime distribution such as onnxruntime, "
                            "onnxruntime-openvino or onnxruntime-gpu, optionally ==VERSION")
    if sep and not _VERSION.match(version):
        raise RuntimeEnvError(f"{text!r}: version {version!r}: expected a release such as 1.20.1 or a prefix such as 1.20")
    return Spec(dist, version)


def cache_root(override: Optional[str] = None) -> Path:
    if override:
        return Path(override).expanduser()
    base = os.environ.get("HARNESS_CACHE") or str(Path.home() / ".cache" / "harness")
    return Path(base).expanduser() / "ort-python"


def version_key(v: str) -> tuple:
    parts = re.split(r"[.+-]", v)
    return tuple((0, int(p), "") if p.isdigit() else (-1, 0, p) for p in parts)


def _read(d: Path) -> Optional[Environment]:
    try:
        info = json.loads((d / MARKER).read_text())
    except (OSError, ValueError):
        return None
    env = Environment(str(info.get("dist", "")), str(info.get("version", "")), d,
                      tuple(str(p) for p in info.get("providers") or ()), str(info.get("build_info", "")),
                      str(info.get("runtime_version") or info.get("version", "")))
    return env if env.dist and env.version and env.python.exists() else None


def installed(root: Optional[Path] = None) -> list[Environment]:
    """Every complete environment in the cache, by distribution then version."""
    root = root or cache_root()
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    out = [e for e in (_read(d) for d in entries if d.is_dir() and not d.name.startswith(".")) if e is not None]
    return sorted(out, key=lambda e: (e.dist, version_key(e.version)))


def matches(env: Environment, spec: Spec) -> bool:
    if env.dist != spec.dist:
        return False
    v = spec.version
    return not v or env.version == v or env.version.startswith(v + ".")


def find(spec: Spec, root: Optional[Path] = None) -> Optional[Environment]:
    """The newest installed environment that a spec names."""
    found = [e for e in installed(root) if matches(e, spec)]
    return found[-1] if found else None


# -- install ----------------------------------------------------------------------
def _run(argv: list[str], timeout: float, what: str) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeEnvError(f"{what} did not finish within {timeout:.0f} s (is the package index reachable?)") from None
    except OSError as exc:
        raise RuntimeEnvError(f"{what} could not start: {exc}") from None
    if p.returncode != 0:
        lines = [ln.strip() for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR:")] or lines[-3:]
        raise RuntimeEnvError(f"{what} failed: {' '.join(errors)[:800] or f'exit status {p.returncode}'}")
    return p.stdout


def probe(python: Path) -> dict:
    """What the environment's runtime offers, asked of that environment."""
    out = _run([str(python), "-I", "-c", _PROBE], limits.RUNTIME_PROBE_TIMEOUT_S, "importing onnxruntime")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeEnvError(f"importing onnxruntime printed no runtime description: {out[-300:]!r}") from None


def install(spec: Spec, root: Optional[Path] = None) -> Environment:
    """Make the environment for one build (a no-op when it is there already)."""
    root = root or cache_root()
    if spec.exact:
        have = find(spec, root)
        if have is not None and have.version == spec.version:
            return have
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.dist}-", dir=root))
    try:
        # The environment's own pip (venv's bundled wheel, offline), so the
        # build lands in this environment only.
        _run([sys.executable, "-m", "venv", str(work)], limits.RUNTIME_VENV_TIMEOUT_S, "creating a virtual environment")
        py = work / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        _run([str(py), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", spec.requirement(), "numpy"],
             limits.RUNTIME_INSTALL_TIMEOUT_S, f"`pip install {spec.requirement()}`")
        info = probe(py)
        dists = info.get("dists") or {}
        if set(dists) != {spec.dist}:
            raise RuntimeEnvError(f"after installing {spec} the environment's onnxruntime module comes from "
                                  f"{', '.join(sorted(dists)) or 'no known distribution'}")
        version = str(dists[spec.dist])
        dest = root / f"{spec.dist}-{version}"
        (work / MARKER).write_text(json.dumps({
            "dist": spec.dist, "version": version, "runtime_version": str(info.get("version", "")),
            "providers": info.get("providers", []),
            "build_info": info.get("build_info", ""), "python": info.get("python", ""),
            "requirement": spec.requirement(), "installed_at": time.time(),
        }, indent=1))
        existing = _read(dest) if dest.exists() else None
        if existing is not None:
            return existing  # a concurrent install won; keep the complete one
        if dest.exists():
            shutil.rmtree(dest)  # a half-written folder from an interrupted install
        # A venv runs from another folder name: its python finds the
        # environment through pyvenv.cfg beside bin/, not through the path
        # it was made at (only the console scripts' shebangs keep the old
        # path, and harness runs none of them).
        os.replace(work, dest)
        made = _read(dest)
        if made is None:
            raise RuntimeEnvError(f"the environment moved to {dest} does not start")
        return replace(made, fetched=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove(spec: Spec, root: Optional[Path] = None) -> list[Environment]:
    """Remove every installed environment the spec names; [] if none."""
    gone = [e for e in installed(root) if matches(e, spec)]
    for e in gone:
        # The marker goes first: a removal cut short never leaves a folder
        # that still looks like a runtime.
        (e.path / MARKER).unlink(missing_ok=True)
        shutil.rmtree(e.path, ignore_errors=True)
    return gone


def size_bytes(env: Environment) -> int:
    return sum(p.stat().st_size for p in env.path.rglob("*") if p.is_file() and not p.is_symlink())


def runner_path(folder: Path) -> Path:
    """A folder holding only this project's two packages (as links), for a
    runtime environment's PYTHONPATH: the folder harness is installed in may
    also hold harness's own onnxruntime, which must not shadow the build."""
    import agents
    import harness

    folder.mkdir(parents=True, exist_ok=True)
    for pkg in (agents, harness):
        src = Path(pkg.__file__).resolve().parent
        link = folder / src.name
        if link.is_symlink() and link.resolve() == src:
            continue
        tmp = folder / f".{src.name}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(src, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a concurrent job never sees no link
    return folder


def child_env(path: Path) -> dict:
    """The environment of a runner in a runtime environment: this project's
    packages from `path`, nothing from the user's site-packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(path)
    env["PYTHONNOUSERSITE"] = "1"
    return env
