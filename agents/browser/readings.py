"""What the browser runner reads besides timings: memory (WebAssembly heap
plus JS heap) and node placement (ONNX Runtime Web's verbose log and
profiler output, both printed to the page's console)."""

from __future__ import annotations

import json
from typing import Callable

from agents.browser.session import BrowserPage, ort_log_lines


class Memory:
    """WebAssembly heap (init.js) + JS heap (CDP Performance.getMetrics),
    sampled between batches, never inside the timed loop."""

    def __init__(self, page: BrowserPage):
        self.page = page
        self.before = None
        self.peak = 0
        self.peak_wasm = 0
        self.peak_heap = 0

    def _now(self, wasm=None) -> int:
        if wasm is None:
            wasm = self.page.call("wasmBytes")
        heap, _ = self.page.js_heap()
        wasm = int(wasm or 0)
        self.peak_wasm = max(self.peak_wasm, wasm)
        self.peak_heap = max(self.peak_heap, heap)
        return wasm + heap

    def baseline(self) -> None:
        self.before = self._now()
        self.peak = max(self.peak, self.before)

    def sample(self, wasm=None) -> None:
        self.peak = max(self.peak, self._now(wasm))

    def result(self) -> dict:
        return {
            "peak_bytes": self.peak,
            "delta_bytes": self.peak - (self.before or 0),
            "method": "wasm memory + JS heap: WebAssembly.Memory buffer sizes (constructor wrapped by an init "
                      "script) plus CDP Performance.getMetrics JSHeapUsedSize, max over samples between "
                      "batches; delta over the same sum after runtime start-up, before session create; "
                      "GPU buffers not included",
        }


def placement(page: BrowserPage, ep: str, details: dict, step: Callable) -> dict | None:
    """Placement from a verbose, profiled session and the strict probe;
    `step(page, stage, fn, *args)` calls the page, turning failures into
    job errors."""
    from agents import placement as pl
    from harness.kernel.eps import CPU_EPS

    if ep == "webgl":
        # ORT Web's WebGL backend is the older onnx.js engine: no ORT session
        # log or profiler, and no CPU fallback (an unsupported op fails load).
        details["placement_note"] = "the WebGL backend reports no placement (no ORT log or profiler)"
        return None
    n0 = len(page.console.lines)
    step(page, "placement", "placement", 3)
    region = page.console.between("placement-start", "profile-start")
    log = pl.parse_verbose_log(ort_log_lines(region))
    profile = pl.parse_profile(profile_events(page.console.between("profile-start", "profile-end")))
    fully = None
    if ep not in CPU_EPS:
        strict = step(page, "placement", "strict")
        fully = bool(strict["fullyAccelerated"])
        if not fully:
            details["strict_probe_message"] = strict["message"][:1000]
    strict_region = {t for _, t in page.console.between("strict-start", "strict-end")}
    noise = [e for e in page.console.errors_since(n0) if e not in strict_region]
    if noise:
        details["placement_console_errors"] = noise[:5]
    return pl.as_dict(pl.combine(ep, log, profile if profile.provider_by_node else None, fully))


def profile_events(lines: list[tuple[str, str]]) -> list:
    """ORT Web prints the profile JSON to the console: '[' then one event
    per line (with a trailing comma) then ']'; sometimes as one message."""
    texts = [t for kind, t in lines if kind in ("log", "info") or t.lstrip().startswith(("{", "[", "]"))]
    joined = "\n".join(texts)
    try:
        data = json.loads(joined)
        return data.get("traceEvents", []) if isinstance(data, dict) else list(data)
    except ValueError:
        pass
    events = []
    for t in texts:
        s = t.strip().rstrip(",")
        if s.startswith("{"):
            try:
                events.append(json.loads(s))
            except ValueError:
                continue
    return events
