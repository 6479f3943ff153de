"""The browser driver: ONNX Runtime Web in Chromium, driven by Playwright.

The device is the browser (name, version, user agent, host CPU) with the
execution providers that really work in it (wasm always; webgpu when an
adapter exists; webgl with a WebGL2 context; webnn when a WebNN context can
be created); its runtimes are the onnxruntime-web versions in the local
cache (`harness browser-runtime install VERSION`).

Each job runs in its own child process (`agents.browser.runner`) that starts
Chromium, serves the page and the runtime from 127.0.0.1 with COOP/COEP, and
measures in the page. Why a process and not a browser shared by jobs:
Playwright's sync API belongs to the thread that started it while the agent
calls `run()` from per-device worker threads and `devices()` from RPC
threads; a page can crash or spin in WebAssembly, and killing the process
group stops everything at once; and a fresh browser profile per job means no
compiled-wasm or shader cache flatters the next job's load time. A launch
costs about a second, small against a measurement.
"""

from __future__ import annotations

from typing import Any, Mapping

from agents.browser.config import BrowserConfig as Config
from agents.registry import driver_config


def create(config: Config | Mapping[str, Any]):
    from agents.browser.driver import BrowserDriver

    return BrowserDriver(driver_config("browser", config).model_dump(exclude_unset=True))
