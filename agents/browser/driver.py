"""BrowserDriver: Chromium as a device, ONNX Runtime Web versions as runtimes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from agents import jobdir
from agents import placement as pl

from agents.browser import locate, pool, runtimes
from agents.contract import AGENT_MACHINE, DeviceInfo, DriverResult, JobError, JobSpec, ProgressFn, RuntimeSpec, Validity
from harness.kernel import procs
from harness.kernel import limits

CONFIG_KEYS = ("executable", "onnxruntime_web", "extra_args", "device_id", "work_dir", "runtime_cache", "keep_browser")
# Target options the page understands; ep.* go to the EP's options object
# (e.g. ep.preferredLayout for WebGPU, ep.deviceType for WebNN), session.* are
# ORT session config entries.
OPTION_KEYS = ("num_threads", "bundle", "graph_optimization_level")
GRAPH_LEVELS = ("disable", "basic", "extended", "all")


class BrowserDriver:
    name = "browser"

    def __init__(self, config: Mapping[str, Any]):
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"browser driver config: unknown key {unknown[0]!r} (known: {', '.join(CONFIG_KEYS)})")
        self.config = dict(config)
        versions = self.config.get("onnxruntime_web") or []
        if isinstance(versions, str) or not all(isinstance(v, (str, int, float)) for v in versions):
            raise ValueError("browser driver config: onnxruntime_web: expected a list of versions, e.g. ['1.30.0']")
        self.offered = [str(v) for v in versions]
        extra = self.config.get("extra_args") or []
        if isinstance(extra, str) or not all(isinstance(a, str) for a in extra):
            raise ValueError("browser driver config: extra_args: expected a list of Chromium flags")
        self.extra_args = tuple(extra)
        self.cache = runtimes.cache_root(self.config.get("runtime_cache"))
        self.work_root = Path(self.config.get("work_dir") or tempfile.gettempdir()) / "harness-browser-jobs"
        self._lock = threading.Lock()
        self._probe: Optional[dict] = None
        self._probe_key: Optional[tuple] = None
        self._probe_at = 0.0
        # One Chromium kept per build and flags, a fresh page per session
        # (pool.py); `keep_browser: false` starts one per session instead.
        self.pool = pool.Pool(self.work_root, enabled=bool(self.config.get("keep_browser", True)))
        # (model digest, version, bundle, ep, options, browser) -> (placement, job id).
        self._placements = pl.Learnt()

    # -- inventory ------------------------------------------------------------
    def _chromium(self) -> locate.Found:
        return locate.find_chromium(self.config.get("executable"))

    def _versions(self) -> list[runtimes.Installed]:
        have = runtimes.cached(self.cache)
        if not self.offered:
            return have
        return [i for i in have if any(i.version == v or i.version.startswith(v + ".") for v in self.offered)]

    def available(self) -> tuple[bool, str]:
        missing = [m for m in ("playwright", "websockets") if importlib.util.find_spec(m) is None]
        if missing:
            return False, (f"the Python package{'s' if len(missing) > 1 else ''} {' and '.join(missing)}"
                           f" {'are' if len(missing) > 1 else 'is'} not installed: `pip install 'harness[browser]'`")
        found = self._chromium()
        if not found.path:
            return False, found.reason
        if not self._versions():
            want = " ".join(self.offered) if self.offered else "--default"
            return False, (f"no onnxruntime-web version is cached in {self.cache}"
                           + (f" (this agent offers {', '.join(self.offered)})" if self.offered else "")
                           + f": run `harness browser-runtime install {want}`")
        return True, ""

    def probe(self) -> dict:
        """What the browser is and which backends work, cached: a launch
        costs a second or more. Re-probed when the executable changes."""
        found = self._chromium()
        exe = found.path or ""
        try:
            mtime = os.stat(exe).st_mtime
        except OSError:
            mtime = 0.0
        key = (exe, mtime, self.extra_args)
        with self._lock:
            fresh = self._probe is not None and self._probe_key == key
            if fresh and ("error" not in self._probe
                          or time.monotonic() - self._probe_at < limits.BROWSER_PROBE_RETRY_S):
                return self._probe
            info = self._run_probe(exe)
            info["executable"], info["executable_source"] = exe, found.source
            self._probe, self._probe_key, self._probe_at = info, key, time.monotonic()
            return info

    def _run_probe(self, exe: str) -> dict:
        self.work_root.mkdir(parents=True, exist_ok=True)
        jd = Path(tempfile.mkdtemp(prefix="probe-", dir=self.work_root))
        try:
            (jd / "probe_spec.json").write_text(json.dumps({"executable": exe, "extra_args": list(self.extra_args)}))
            # Through the kept browser, which the first job then finds running.
            kept = self._kept(exe, "probe", jd, {}, wait_s=limits.BROWSER_KEEPER_BUSY_WAIT_S)
            fin, _ = jobdir.run_runner(["agents.browser.runner", "probe", str(jd)], jd, limits.BROWSER_PROBE_TIMEOUT_S,
                                       lambda *a: None, threading.Event(), warm=kept)
            try:
                return json.loads((jd / "probe.json").read_text())
            except (OSError, ValueError):
                why = "timed out" if fin.reason == "timeout" else procs.signal_name(fin.returncode or 0)
                return {"error": f"browser probe failed ({why}): {procs.tail(str(jd / 'stderr.log'), 800)}"}
        finally:
            shutil.rmtree(jd, ignore_errors=True)

    def device_eps(self, info: dict) -> dict[str, str]:
        """EP -> '' if it works in this browser, else why not."""
        return {
            "wasm": "",
            "webgpu": "" if info.get("webgpu") else info.get("webgpuReason", "no WebGPU adapter"),
            "webgl": "" if info.get("webgl") else info.get("webglReason", "no WebGL2 context"),
            "webnn": "" if info.get("webnn") else info.get("webnnReason", "WebNN unavailable"),
        }

    def devices(self) -> list[DeviceInfo]:
        ok, _ = self.available()
        if not ok:
            return []
        info = self.probe()
        name, version = _browser_name(info)
        local_id = self.config.get("device_id") or name.lower().replace(" ", "-")
        if "error" in info:
            return [DeviceInfo(local_id, "browser", {"browser": name, "executable": info.get("executable", "")},
                               (), state="offline", state_reason=info["error"][:500], exclusive=AGENT_MACHINE)]
        eps = self.device_eps(info)
        working = [ep for ep, why in eps.items() if not why]
        rts = tuple(RuntimeSpec("onnxruntime-web", i.version, tuple(ep for ep in runtimes.eps_of(i) if ep in working),
                                ("onnx",)) for i in self._versions())
        missing = [v for v in self.offered if not any(r.version == v or r.version.startswith(v + ".") for r in rts)]
        return [DeviceInfo(local_id, "browser", _facts(info, name, version, eps), rts,
                           state_reason=("not cached: " + ", ".join(f"onnxruntime-web {v} "
                                         f"(`{runtimes.install_hint(v)}`)" for v in missing)) if missing else "",
                           exclusive=AGENT_MACHINE)]

    def close(self) -> None:
        self.pool.close()

    def _kept(self, exe: str, kind: str, jd: Path, note: dict, wait_s: Optional[float] = None):
        """jobdir.run_runner's `warm` hook: the request served by the kept
        browser, or None (no keeper: the runner is spawned, `note` says why)."""
        keeper = self.pool.get(exe, self.extra_args)
        if keeper is None:
            return None

        def serve(**kw) -> Optional[procs.Finished]:
            fin = keeper.run(kind, jd, note, wait_s=wait_s, **kw)
            if fin is None:  # spawned instead
                note.pop("keeper_start_s", None)
                note.update(browser_start="spawn", browser_start_why=keeper.why or "the kept browser was busy")
            return fin

        return serve

    def _placement_key(self, model, inst, bundle: str, target, options: dict, info: dict) -> tuple:
        return (model.digest, inst.version, bundle, target.ep, tuple(sorted(options.items())),
                info.get("executable"), info.get("version"), self.extra_args)

    # -- jobs -----------------------------------------------------------------
    def run(self, job: JobSpec, progress: ProgressFn, cancel: threading.Event) -> DriverResult:
        target = job.target
        base = dict(runtime_name="onnxruntime-web", runtime_version=target.version, ep=target.ep,
                    options=dict(target.options))

        def fail(kind: str, message: str) -> DriverResult:
            return DriverResult(**base, error=JobError("job", kind, message), validity=Validity(stop_reason="error"))

        if target.runtime != "onnxruntime-web":
            return fail("unsupported_target", f"the browser driver runs onnxruntime-web, not {target.runtime!r}")
        inst = runtimes.pick(self._versions(), target.version)
        held = runtimes.find(target.version, self.cache)
        if inst is None and held is not None:
            return fail("runtime_missing", f"onnxruntime-web {held.version} is cached but this agent offers only "
                                           f"{', '.join(self.offered)} (browser.onnxruntime_web in agent.yaml)")
        if inst is None:
            return fail("runtime_missing", f"onnxruntime-web {target.version or '(any version)'} is not cached on this "
                                           f"agent; install it with `{runtimes.install_hint(target.version)}`")
        base["runtime_version"] = inst.version
        info = self.probe()
        if "error" in info:
            return fail("device_offline", info["error"])
        why = self.device_eps(info).get(target.ep)
        if why is None:
            return fail("unsupported_ep", f"execution provider {target.ep!r} is not one of ONNX Runtime Web's "
                                          f"({', '.join(runtimes.BROWSER_EPS)})")
        if why:
            return fail("unsupported_ep", f"{target.ep} does not work in this browser: {why}")
        try:
            opts = _parse_options(dict(target.options), info)
        except ValueError as exc:
            return fail("bad_option", str(exc))
        bundle = runtimes.bundle_for(inst, target.ep, opts["bundle"])
        if bundle is None:
            return fail("unsupported_ep", f"onnxruntime-web {inst.version} has no bundle for {target.ep}"
                                          + (f" named {opts['bundle']!r}" if opts["bundle"] else ""))
        base["options"] = {**base["options"], "num_threads": str(opts["num_threads"])}
        onnx_models = [m for m in job.models if m.format == "onnx"]
        if not onnx_models:
            return fail("unsupported_format", "the browser driver needs an ONNX model")

        key = self._placement_key(onnx_models[0], inst, bundle, target, base["options"], info)
        known = self._placements.get(key)
        self.work_root.mkdir(parents=True, exist_ok=True)
        jd = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))
        try:
            (jd / "job.json").write_text(json.dumps({
                "executable": info["executable"], "extra_args": list(self.extra_args),
                "version": inst.version, "ort_dist": str(inst.dist), "bundle": bundle, "ep": target.ep,
                "num_threads": opts["num_threads"], "ep_options": opts["ep"], "session_config": opts["session"],
                "graph_optimization_level": opts["graph_optimization_level"],
                "model_path": str(onnx_models[0].path), "measure": job.measure.__dict__,
                "placement": pl.as_dict(known[0]) if known else None,
            }))
            jobdir.write_probes(jd, job.probes)
            from agents.hostfacts import run_conditions

            note: dict = {}
            before = run_conditions()
            fin, phase = jobdir.run_runner(["agents.browser.runner", "job", str(jd)], jd, job.timeout_s, progress,
                                           cancel, warm=self._kept(info["executable"], "job", jd, note))
            conditions = {"before": before, "after": run_conditions()}
            note.setdefault("browser_start", "spawn")
            if known:
                note["placement_from"] = f"an earlier job of this model, runtime and options ({known[1]})"
            res = _collect(jd, fin, base, phase, conditions, info, target.ep, note)
            if not known:
                self._placements.remember(key, res.placement, res.error, job.job_id)
            return res
        finally:
            shutil.rmtree(jd, ignore_errors=True)


def _browser_name(info: dict) -> tuple[str, str]:
    product = (info.get("product") or {}).get("product") or info.get("version") or ""
    version = product.split("/", 1)[-1] if "/" in product else product
    exe = (info.get("executable") or "").lower()
    if "headless_shell" in exe:
        name = "Chromium headless shell"
    elif "chromium" in exe:
        name = "Chromium"
    elif "edge" in exe:
        name = "Edge"
    else:
        name = "Chrome"
    return name, version


def _facts(info: dict, name: str, version: str, eps: dict[str, str]) -> dict[str, str]:
    from agents.hostfacts import host_facts

    host = host_facts()
    major = version.split(".", 1)[0]
    facts = {
        "browser": f"{name} {version}".strip(),
        "browser_version": version,
        "model": f"{name} {major} ({platform.system()} {platform.machine()})",
        "user_agent": info.get("userAgent", ""),
        "cpu": host.get("model", ""),
        "soc": host.get("soc", ""),
        "os_version": host.get("os_version", ""),
        "abi": host.get("abi", ""),
        "ram_mb": host.get("ram_mb", ""),
        "cpu_count": str(info.get("hardwareConcurrency") or host.get("cpu_count", "")),
        "hostname": host.get("hostname", ""),
        "cross_origin_isolated": str(bool(info.get("crossOriginIsolated"))).lower(),
        "executable": info.get("executable", ""),
        "executable_source": info.get("executable_source", ""),
    }
    gpu = info.get("webgpu")
    if gpu:
        facts["webgpu_adapter"] = " ".join(x for x in (gpu.get("vendor"), gpu.get("architecture"),
                                                       gpu.get("device"), gpu.get("description")) if x)
        facts["webgpu_software"] = str(_software(gpu)).lower()
    else:
        facts["webgpu"] = f"unavailable: {eps['webgpu']}"
    if info.get("webgl"):
        facts["webgl_renderer"] = info["webgl"].get("renderer", "")
    else:
        facts["webgl"] = f"unavailable: {eps['webgl']}"
    facts["webnn"] = "available" if info.get("webnn") else f"unavailable: {eps['webnn']}"
    return facts


def _software(gpu: dict) -> bool:
    """A CPU-emulated WebGPU adapter: the spec's fallback-adapter flag, or a
    known software rasteriser (SwiftShader, llvmpipe/lavapipe, WARP)."""
    if gpu.get("isFallbackAdapter"):
        return True
    text = " ".join(str(gpu.get(k, "")) for k in ("vendor", "architecture", "device", "description")).lower()
    return any(s in text for s in ("swiftshader", "llvmpipe", "lavapipe", "software", "warp"))


def _parse_options(options: dict, info: dict) -> dict:
    out: dict[str, Any] = {"bundle": "", "graph_optimization_level": "", "ep": {}, "session": {}}
    hc = int(info.get("hardwareConcurrency") or os.cpu_count() or 1)
    # ORT Web's own default (min(4, ceil(cores / 2)), lib/wasm/wasm-core-impl
    # in onnxruntime-web), set explicitly so the count that ran is on record.
    out["num_threads"] = min(4, math.ceil(hc / 2))
    for key, value in options.items():
        if key == "num_threads":
            try:
                out["num_threads"] = int(value)
            except ValueError:
                raise ValueError(f"option num_threads={value!r}: expected a whole number of threads") from None
            if not 1 <= out["num_threads"] <= 64:
                raise ValueError(f"option num_threads={value!r}: expected 1..64")
        elif key == "bundle":
            if "/" in value or not value.endswith((".js", ".mjs")):
                raise ValueError(f"option bundle={value!r}: expected a file name in onnxruntime-web's dist/, "
                                 "e.g. ort.all.min.mjs")
            out["bundle"] = value
        elif key == "graph_optimization_level":
            if value not in GRAPH_LEVELS:
                raise ValueError(f"option graph_optimization_level={value!r}: expected one of {', '.join(GRAPH_LEVELS)}")
            out["graph_optimization_level"] = value
        elif key.startswith("ep.") and len(key) > 3:
            out["ep"][key[3:]] = _scalar(value)
        elif key.startswith("session.") and len(key) > 8:
            out["session"][key] = str(value)
        else:
            raise ValueError(f"unknown option {key!r} for onnxruntime-web (known: {', '.join(OPTION_KEYS)}, "
                             "ep.<name>, session.<config key>)")
    return out


def _scalar(value: str) -> Any:
    low = str(value).lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(value)
    except ValueError:
        return value


def _collect(jd: Path, fin: procs.Finished, base: dict, phase: str, conditions: dict, info: dict,
             ep: str, note: dict) -> DriverResult:
    def annotate(details: dict, warnings: list) -> None:
        if ep == "webgpu" and info.get("webgpu") and _software(info["webgpu"]):
            details["webgpu_adapter"] = info["webgpu"]
            warnings.append("WebGPU ran on a software adapter (CPU emulation): timings do not represent a GPU")
            details["not_representative"] = "WebGPU on a software adapter (CPU emulation), not a GPU"
        if (details.get("num_threads") or 1) > 1 and details.get("cross_origin_isolated") is False:
            warnings.append("the page was not cross-origin isolated: ONNX Runtime Web ran single-threaded")

    details: dict[str, Any] = {"conditions": conditions, "runner_wall_s": round(fin.wall_s, 3), **note}
    killed = "the runner and its browser were" if note["browser_start"] == "spawn" else \
        "the page's browser (kept for sessions) was"
    return jobdir.collect(jd, fin, {**base, "runtime_name": "onnxruntime-web"}, phase, details,
                          killed=killed, annotate=annotate)
