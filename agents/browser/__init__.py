"""The browser driver: ONNX Runtime Web in Chromium, driven by Playwright.

The device is the browser (name, version, user agent, host CPU) with the
execution providers that really work in it (wasm always; webgpu when an
adapter exists; webgl with a WebGL2 context; webnn when a WebNN context can
be created); its runtimes are the onnxruntime-web versions in the local
cache (`harness browser-runtime install VERSION`).

Each session (a job is one or more) runs in a fresh page (a new tab) of a
Chromium the agent keeps between sessions and jobs: one keeper
process per Chromium build and launch flags (agents.browser.keeper, driven
from pool.py), started lazily by the first probe or session in a process
group of its own, holding Chromium with Playwright attached over CDP. Why a
process and not the agent: Playwright's sync API belongs to the thread that
started it while the agent calls `run()` from per-device worker threads and
`devices()` from RPC threads; and a page can spin in WebAssembly, which is
stopped by killing the keeper's group (Chromium with it) at the job's time
limit, the next session starting a new one. A fresh page per session means
its own renderer process, with the origin's storage and the profile's
cookies cleared before it opens, so no state of one session is seen by the
next (the browser, GPU and network processes, the HTTP cache of ORT Web's
files and V8's code cache are shared: session.py, server.py), and a
renderer crash costs that session only. The page and the runtime are served
from 127.0.0.1 with COOP/COEP by one server per keeper (per session in a
spawned runner). `keep_browser: false`
starts a Chromium per session instead (a runner process of its own,
agents.browser.runner), as does any session no keeper could take.
"""

from __future__ import annotations

from typing import Any, Mapping

from agents.browser.config import BrowserConfig as Config
from agents.registry import driver_config


def create(config: Config | Mapping[str, Any]):
    from agents.browser.driver import BrowserDriver

    return BrowserDriver(driver_config("browser", config).model_dump(exclude_unset=True))
