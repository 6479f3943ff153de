"""ONNX Runtime Web versions, side by side in a local cache.

Each version lives in `<cache>/ort-web/<version>/` (cache: $HARNESS_CACHE or
~/.cache/harness) with the package's `dist/` files (the JS bundles and the
WebAssembly binaries the page loads) and `installed.json`, written last, so a
half-finished install never looks like a version. Versions come from the npm
registry through the ordinary `npm` client (`npm pack`), so proxies and
mirrors configured for npm apply.

Pure file work and subprocesses only: no browser, no Playwright.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.kernel import limits

PACKAGE = "onnxruntime-web"
# The version `harness browser-runtime install --default` fetches and a job
# with no version asks for when nothing newer is cached. 1.30.0 is the npm
# `latest` tag when this was chosen.
DEFAULT_VERSION = "1.30.0"
# An exact version (1.30.0, 1.23.0-dev.2025...) or a prefix to resolve (1.22).
_SPEC = re.compile(r"^\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?$")
_EXACT = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
MARKER = "installed.json"

# Bundles the page loads, by EP, best first. ORT Web ships one bundle per
# backend family (https://onnxruntime.ai/docs/tutorials/web/build-web-app.html):
# ort.wasm = CPU only; ort.webgpu = WebGPU (the JSEP build up to 1.2x, the
# native WebGPU EP in later releases); ort.webgl = the WebGL backend;
# ort.all = everything, including WebNN. ESM first, classic scripts for old
# releases.
BUNDLES = {
    "wasm": ("ort.wasm.min.mjs", "ort.min.mjs", "ort.all.min.mjs", "ort.wasm.min.js", "ort.min.js"),
    "webgpu": ("ort.webgpu.min.mjs", "ort.all.min.mjs", "ort.webgpu.min.js", "ort.all.min.js"),
    "webgl": ("ort.webgl.min.mjs", "ort.all.min.mjs", "ort.webgl.min.js", "ort.all.min.js", "ort.min.js"),
    "webnn": ("ort.all.min.mjs", "ort.all.min.js"),
}
BROWSER_EPS = tuple(BUNDLES)


class InstallError(Exception):
    """An install or lookup failure, phrased for the user."""


@dataclass(frozen=True)
class Installed:
    version: str
    path: Path  # the version's folder; bundles are in path / "dist"
    fetched: bool = False  # False: it was already cached

    @property
    def dist(self) -> Path:
        return self.path / "dist"


def cache_root(override: Optional[str] = None) -> Path:
    if override:
        return Path(override).expanduser()
    base = os.environ.get("HARNESS_CACHE") or str(Path.home() / ".cache" / "harness")
    return Path(base).expanduser() / "ort-web"


def version_key(v: str) -> tuple:
    main, _, pre = v.partition("-")
    nums = tuple(int(p) if p.isdigit() else 0 for p in main.split("."))
    # A release sorts above its own pre-releases (1.30.0 > 1.30.0-dev...).
    return nums + ((1, "") if not pre else (0, pre))


def cached(root: Optional[Path] = None) -> list[Installed]:
    """Every complete version in the cache, oldest first."""
    root = root or cache_root()
    out = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for d in entries:
        if d.name.startswith(".") or not (d / MARKER).is_file() or not (d / "dist").is_dir():
            continue
        out.append(Installed(d.name, d))
    return sorted(out, key=lambda i: version_key(i.version))


def find(version: str, root: Optional[Path] = None) -> Optional[Installed]:
    """The cached version a job's `version` asks for: exact, or the newest
    cached one with that prefix ('1.22' -> 1.22.x); '' -> the newest."""
    return pick(cached(root), version)


def pick(have: list[Installed], version: str) -> Optional[Installed]:
    """From versions sorted oldest first: exact, newest with the prefix, or
    the newest of all for ''."""
    if not version:
        return have[-1] if have else None
    for i in reversed(have):
        if i.version == version or i.version.startswith(version + ".") or i.version.startswith(version + "-"):
            return i
    return None


def install_hint(version: str) -> str:
    return f"harness browser-runtime install {version or '--default'}"


def bundle_for(inst: Installed, ep: str, override: str = "") -> Optional[str]:
    """The bundle file the page loads for ep, or None if this version has none."""
    if override:
        return override if (inst.dist / override).is_file() and "/" not in override else None
    for name in BUNDLES.get(ep, ()):
        if (inst.dist / name).is_file():
            return name
    return None


def eps_of(inst: Installed) -> tuple[str, ...]:
    return tuple(ep for ep in BROWSER_EPS if bundle_for(inst, ep))


# -- install ----------------------------------------------------------------------
def _npm() -> str:
    npm = shutil.which("npm")
    if not npm:
        raise InstallError("npm not found: install Node.js and npm (e.g. `apt-get install nodejs npm`) "
                            "to fetch onnxruntime-web from the npm registry")
    return npm


def _run_npm(args: list[str], timeout: float, cwd: Optional[str] = None) -> str:
    try:
        p = subprocess.run([_npm(), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InstallError(f"`npm {' '.join(args)}` did not finish within {timeout:.0f} s "
                            "(is the npm registry reachable?)") from None
    if p.returncode != 0:
        # With --json npm puts {"error": {"summary": ...}} on stdout; the
        # stderr lines start with "npm error".
        summary = None
        try:
            summary = (json.loads(p.stdout).get("error") or {}).get("summary")
        except (ValueError, AttributeError):
            pass
        lines = [ln.removeprefix("npm error").strip() for ln in p.stderr.strip().splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith(("code ", "A complete log"))]
        detail = summary or (lines[0] if lines else f"exit status {p.returncode}")
        raise InstallError(f"`npm {args[0]} {args[1]}` failed: {detail}")
    return p.stdout


def resolve(spec: str) -> str:
    """An exact version for spec, asking the registry only for prefixes."""
    if spec in ("", "latest"):
        out = _run_npm(["view", f"{PACKAGE}@latest", "version", "--json"], limits.NPM_VIEW_TIMEOUT_S)
        return str(json.loads(out))
    if not _SPEC.match(spec):
        raise InstallError(f"version {spec!r}: expected a version such as {DEFAULT_VERSION} or a prefix such as 1.22")
    if _EXACT.match(spec):
        return spec
    out = _run_npm(["view", f"{PACKAGE}@{spec}", "version", "--json"], limits.NPM_VIEW_TIMEOUT_S)
    if not out.strip():
        raise InstallError(f"no {PACKAGE} version matches {spec!r} on the npm registry")
    data = json.loads(out)
    versions = [data] if isinstance(data, str) else list(data)
    return max(versions, key=version_key)


def _wanted(name: str) -> Optional[str]:
    """Path inside the version folder for a tarball member, or None to skip.
    Source maps and the Node.js-only bundles are not needed by the page."""
    if not name.startswith("package/"):
        return None
    rel = name[len("package/"):]
    if rel in ("package.json", "LICENSE", "README.md"):
        return rel
    if rel.startswith("dist/") and rel.count("/") == 1 and not rel.endswith(".map") and ".node." not in rel:
        return rel
    return None


def install(spec: str, root: Optional[Path] = None) -> Installed:
    """Fetch one version into the cache (a no-op when it is there already)."""
    root = root or cache_root()
    exact = _EXACT.match(spec or "") is not None
    if exact:
        have = find(spec, root)
        if have is not None and have.version == spec:
            return have
    try:
        version = resolve(spec)
    except InstallError:
        # Offline with a matching version cached: that one will do.
        have = find(spec, root) if spec not in ("", "latest") else None
        if have is not None:
            return have
        raise
    have = find(version, root)
    if have is not None and have.version == version:
        return have
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=root))
    try:
        out = _run_npm(["pack", f"{PACKAGE}@{version}", "--json", "--pack-destination", str(work)],
                       limits.NPM_TIMEOUT_S, cwd=str(work))
        info = _pack_info(out)
        tarball = work / info.get("filename", f"{PACKAGE}-{version}.tgz")
        if not tarball.is_file():
            found = list(work.glob("*.tgz"))
            if not found:
                raise InstallError(f"`npm pack {PACKAGE}@{version}` produced no tarball")
            tarball = found[0]
        stage = work / "stage"
        files = _extract(tarball, stage)
        pkg = json.loads((stage / "package.json").read_text())
        if pkg.get("name") != PACKAGE or pkg.get("version") != version:
            raise InstallError(f"the tarball holds {pkg.get('name')}@{pkg.get('version')}, not {PACKAGE}@{version}")
        (stage / MARKER).write_text(json.dumps({
            "package": PACKAGE, "version": version, "integrity": info.get("integrity"),
            "shasum": info.get("shasum"), "files": files, "installed_at": time.time(),
        }, indent=1))
        dest = root / version
        if dest.exists():
            # A half-written folder from an interrupted older layout, or a
            # concurrent install that won: keep a complete one, replace the rest.
            if (dest / MARKER).is_file():
                return Installed(version, dest)
            shutil.rmtree(dest)
        os.replace(stage, dest)
        return Installed(version, dest, fetched=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pack_info(out: str) -> dict:
    try:
        data = json.loads(out)
    except ValueError:
        return {}
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0]
    return data if isinstance(data, dict) else {}


def _extract(tarball: Path, dest: Path) -> int:
    dest.mkdir(parents=True)
    n = 0
    with tarfile.open(tarball, "r:gz") as tf:
        for m in tf.getmembers():
            rel = _wanted(m.name)
            if rel is None or not m.isfile() or ".." in rel.split("/"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            if src is None:
                continue
            with src, open(target, "wb") as fh:
                shutil.copyfileobj(src, fh)
            n += 1
    if not (dest / "package.json").is_file() or not (dest / "dist").is_dir():
        raise InstallError(f"{tarball.name} does not look like the {PACKAGE} package (no package.json or dist/)")
    return n


def size_bytes(inst: Installed) -> int:
    return sum(p.stat().st_size for p in inst.path.rglob("*") if p.is_file())
