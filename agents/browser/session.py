"""Chromium driven by Playwright: one browser, and a fresh page per session.

`Browser` starts Chromium as a plain child of the process that holds it
(its process group) and attaches Playwright over CDP, through a pipe and
not a port (devtools_pipe.py). Playwright's own
`launch()` would put the browser in a process group of its own, which a
whole-group kill on timeout or cancel would miss; started this way, killing
the holder's group takes every browser process with it. The flags are ours
and recorded.

`BrowserPage` is one session's page: a new tab in the browser's profile
with the origin's storage and cookies cleared before it opens, so nothing
one session stored is seen by the next, and its renderer is a process of
its own (a crash of one page leaves the browser serving the next). The
profile's HTTP cache and V8's code cache stay between sessions: they hold
ONNX Runtime Web's files, the same bytes for every session (server.py).

The console is captured from the first line: ONNX Runtime Web writes its
log (placement) and its profile there, and page errors become job errors.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.kernel import limits

# Flags: no network chatter, no first-run UI, a fresh profile per launch;
# --enable-unsafe-webgpu exposes WebGPU where Chromium does not by default
# (Linux; it then gives the SwiftShader software adapter when there is no
# GPU); the WebNN feature makes navigator.ml exist where the platform has a
# backend (the probe then checks that a context can really be created).
BASE_ARGS = (
    "--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
    "--mute-audio", "--enable-unsafe-webgpu", "--enable-features=WebMachineLearningNeuralNetwork",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# ORT's log line: "2026-01-01 12:00:00.000 [W:onnxruntime:, file.cc:12 Fn] text".
_ORT_LOG = re.compile(r"^\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[([VIWEF]):onnxruntime:")
MARK = "__harness_mark__ "
_READY = "() => !!(window.harness && window.harness.ready)"


class PageFailed(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass
class Console:
    """Console messages in arrival order, as (type, text)."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def add(self, kind: str, text: str) -> None:
        self.lines.append((kind, _ANSI.sub("", text)))

    def between(self, start: str, end: str) -> list[tuple[str, str]]:
        """Lines after the last `start` mark up to the next `end` mark."""
        idx = [i for i, (_, t) in enumerate(self.lines) if t == MARK + start]
        if not idx:
            return []
        out = []
        for kind, text in self.lines[idx[-1] + 1:]:
            if text == MARK + end:
                break
            out.append((kind, text))
        return out

    def errors_since(self, n: int) -> list[str]:
        """Console errors after line n that are not ONNX Runtime's own log at
        a level below error (ORT writes its whole log, verbose included,
        through console.error)."""
        out = []
        for kind, text in self.lines[n:]:
            if kind != "error":
                continue
            m = _ORT_LOG.match(text)
            if m and m.group(1) not in "EF":
                continue
            out.append(text)
        return out


def ort_log_lines(lines: list[tuple[str, str]]) -> list[str]:
    return [t for _, t in lines if _ORT_LOG.match(t)]


# Chromium reads DevTools from fd 3 and writes to fd 4 (devtools_pipe.py);
# Popen maps only 0-2, so a POSIX shell moves the pipes there and gives the
# browser /dev/null for stdin and its log for stdout, then execs it (one
# process, the pid Popen returned).
_TO_FDS_3_4 = 'exec 3<&0 4>&1 0</dev/null 1>&2; exec "$@"'


def start_chromium(executable: str, profile_dir: Path, log_path: Path, extra_args: tuple[str, ...] = ()):
    """Start Chromium with DevTools on a pipe, no port (devtools_pipe.py);
    returns (process, the relay, argv)."""
    from agents.browser.devtools_pipe import DevToolsPipe

    profile_dir.mkdir(parents=True, exist_ok=True)
    argv = [executable, *BASE_ARGS, *extra_args, f"--user-data-dir={profile_dir}", "--remote-debugging-pipe",
            "about:blank"]
    pipe = DevToolsPipe()
    log = open(log_path, "wb")
    try:
        stdin, stdout = pipe.child_fds()
        proc = subprocess.Popen(["/bin/sh", "-c", _TO_FDS_3_4, "sh", *argv], stdin=stdin, stdout=stdout,
                                stderr=log)
    except BaseException:
        pipe.close()
        raise
    finally:
        log.close()
    pipe.started()
    return proc, pipe, argv


def _tail(path: Path, n: int = 1500) -> str:
    try:
        data = path.read_bytes()[-n:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


class Browser:
    """A running Chromium with Playwright attached; pages come and go.

    Kept between sessions by agents.browser.keeper (one per agent and launch
    flags) or started for one session by a spawned runner."""

    def __init__(self, executable: str, work: Path, extra_args: tuple[str, ...] = ()):
        from playwright.sync_api import sync_playwright

        t0 = time.monotonic()
        self.log_path = work / "chromium.log"
        self.proc, self.pipe, self.argv = start_chromium(executable, work / "profile", self.log_path, extra_args)
        self._pw = None
        self.pages = 0  # pages opened on this browser so far
        # performance.now()'s step, per crossOriginIsolated: the browser's
        # own coarsening (a property of its build and the page's isolation,
        # not of the page), measured on its first page of each kind.
        self.timer_steps: dict[bool, float] = {}
        try:
            self._pw = sync_playwright().start()
            self.browser = self._pw.chromium.connect_over_cdp(self.pipe.serve(),
                                                              timeout=limits.BROWSER_LAUNCH_TIMEOUT_S * 1000)
            self.version = self.browser.version
            self._cdp = self.browser.new_browser_cdp_session()
            self.product = self._cdp.send("Browser.getVersion")
            # The persistent profile (the default context) holds every page:
            # see BrowserPage. Console and page errors are taken at its level,
            # so what a page logs before its Page object reaches us is kept
            # (BrowserContext events "console" since Playwright 1.34,
            # "weberror" since 1.38; pyproject asks for 1.40 or newer).
            self.profile = self.browser.contexts[0]
            self._consoles: dict = {}
            self.profile.on("console", lambda m: self._console(m.page).add(m.type, m.text))
            self.profile.on("weberror", lambda e: self._console(e.page).page_errors.append(str(e.error)))
            self._scripts: set[str] = set()
            self._helper = None  # the tab whose DevTools session clears storage
        except Exception as exc:
            try:  # a Chromium that exited closed the relay's socket a moment before its exit shows
                exited = self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                exited = None
            self.close()
            if exited is not None:
                raise PageFailed("browser_start", f"Chromium exited ({exited}) at start: {_tail(self.log_path)}") from None
            if "Timeout" in type(exc).__name__:
                raise PageFailed("browser_start", f"Chromium did not answer over DevTools within "
                                                  f"{limits.BROWSER_LAUNCH_TIMEOUT_S:.0f} s: {_tail(self.log_path)}") from None
            raise
        self.launch_s = time.monotonic() - t0

    def _console(self, page) -> "Console":
        if page is None:  # a service worker's: no page of ours
            return Console()
        return self._consoles.setdefault(page, Console())

    def open_page(self, url: str, init_script: Optional[str] = None):
        """A new tab at `url` in the profile, its storage cleared first; the
        Playwright Page, once its load event has fired. Opened by DevTools'
        Target.createTarget with the URL (a stable command of the protocol;
        no browserContextId: the default context) (not a tab at about:blank that then
        navigates, as Page.new_page does): the page's renderer is then the
        first and only one the tab starts, about 20 ms less per session."""
        if init_script and init_script not in self._scripts:
            self.profile.add_init_script(init_script)  # every later page of the profile
            self._scripts.add(init_script)
        self.clear_origin(url)
        timeout_ms = limits.BROWSER_LAUNCH_TIMEOUT_S * 1000
        with self.profile.expect_page(timeout=timeout_ms) as info:
            self._cdp.send("Target.createTarget", {"url": url + "/"})
        page = info.value
        page.wait_for_load_state("load", timeout=timeout_ms)
        if page.url.startswith("chrome-error:"):
            page.close()
            raise PageFailed("page_error", f"the page at {url}/ did not load (Chromium showed its error page)")
        return page

    def clear_origin(self, url: str) -> None:
        """Clear what a page of `url`'s origin could leave for the next: see
        BrowserPage. Sent through a tab of the profile (the browser target
        has no storage partition to clear: it answers Internal error)."""
        for attempt in (1, 2):
            try:
                if self._helper is None:
                    tab = self.profile.pages[0] if self.profile.pages else self.profile.new_page()
                    self._helper = self.profile.new_cdp_session(tab)
                self._helper.send("Storage.clearDataForOrigin", {"origin": url, "storageTypes": "all"})
                break
            except Exception:
                self._helper = None  # its tab was closed or crashed: another one
                if attempt == 2:
                    raise
        self.profile.clear_cookies()

    def forget(self, page) -> None:
        self._consoles.pop(page, None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def dead(self, ask: bool = False, wait_s: float = 0.0) -> str:
        """Why this browser cannot serve another page, or ''. `ask`: also a
        DevTools round trip (a millisecond), which a browser killed a moment
        ago but not yet reaped cannot answer. `wait_s`: first wait that long
        for the process to exit."""
        if wait_s:
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None and self.browser.is_connected() and ask:
            try:
                self._cdp.send("Browser.getVersion")
            except Exception as exc:
                if self.proc.poll() is None:
                    return f"the browser did not answer over DevTools: {exc}"[:400]
        if self.proc.poll() is not None:
            return f"the browser exited ({self.proc.returncode}): {_tail(self.log_path, 400)}"
        if not self.browser.is_connected():
            return "Playwright lost its DevTools connection to the browser"
        return ""

    def close(self) -> None:
        for step in (lambda: self.browser.close(), lambda: self._pw and self._pw.stop()):
            try:
                step()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(limits.KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.pipe.close()


class BrowserPage:
    """One session's page at `url`, with console capture; closing it closes
    the page and nothing else.

    A new tab in the browser's persistent profile (its default context), not
    a new incognito-style context: that profile's disk cache is what keeps
    ONNX Runtime Web's files and V8's compiled code between sessions
    (server.py). What one session's page could leave for the next is cleared
    before the page opens (Browser.clear_origin): the origin's storage of every kind
    (Storage.clearDataForOrigin with storageTypes "all": cookies, local and
    session storage, IndexedDB, Cache Storage, service workers, file systems,
    shared storage, storage buckets; Chromium's
    content/browser/devtools/protocol/storage_handler.cc, there since 2016, a
    domain the protocol marks experimental, so the session test checks every
    kind on the Chromium it runs) and the profile's cookies (host-keyed, so
    not only the origin's). The HTTP cache and code cache are not storage
    there and stay; the page itself is a new renderer process with its own
    heaps."""

    def __init__(self, browser: Browser, url: str, init_script: Optional[str] = None):
        self.console = Console()
        self.crashed = False
        self.owner = browser
        self.log_path = browser.log_path
        self.product, self.version, self.argv = browser.product, browser.version, browser.argv
        browser.pages += 1
        self.page = None
        try:
            timeout_ms = limits.BROWSER_LAUNCH_TIMEOUT_S * 1000
            self.page = browser.open_page(url, init_script)
            self.console = browser._console(self.page)
            self.page.on("crash", lambda *_: setattr(self, "crashed", True))
            # runner.js is a module script, so it has run by the load event
            # (module scripts are deferred: HTML's script-processing model) and
            # one evaluate answers; Playwright's polling only for a late page.
            if not self.page.evaluate(_READY):
                self.page.wait_for_function(_READY, timeout=timeout_ms)
            self.cdp = self.page.context.new_cdp_session(self.page)
            self.cdp.send("Performance.enable")
        except Exception:
            self.close()
            raise

    def call(self, name: str, *args: Any) -> Any:
        """window.harness[name](...args) in the page; crashes and exceptions
        become PageFailed with the page's own message. No timeout of its own:
        a step may take as long as the job allows, and the agent kills the
        process holding the browser (and the browser with it) at the job's
        time limit."""
        return self._guard(self.page.evaluate, "([f, a]) => window.harness[f](...a)", [name, list(args)])

    def _guard(self, fn, *args: Any) -> Any:
        """fn(*args) with Playwright's errors as PageFailed: a crash when the
        page's renderer died or the browser is gone (Playwright then raises
        TargetClosedError from whichever call was in flight, a page call or a
        CDP one), else the page's own message."""
        try:
            return fn(*args)
        except Exception as exc:
            text = str(exc)
            if self.crashed or "Target crashed" in text:
                raise PageFailed("crash", "the page crashed (its renderer process died)") from None
            # A killed browser's DevTools socket closes a moment before the
            # process can be reaped: a closed target waits for the exit.
            dead = self.owner.dead(wait_s=2.0 if "has been closed" in text else 0.0)
            if dead:
                raise PageFailed("crash", dead) from None
            raise PageFailed("page_error", _page_message(text)) from None

    def timer_resolution_ms(self) -> tuple[float, str]:
        """The smallest step performance.now() takes, and where the figure
        is from: browsers coarsen it (5 µs cross-origin isolated in Chromium,
        100 µs without), which decides how short a latency the samples can
        resolve. Measured in the browser's first page of this isolation
        (200,000 reads, 30-40 ms) and taken from there after."""
        iso = bool(self._guard(self.page.evaluate, "() => crossOriginIsolated === true"))
        if iso in self.owner.timer_steps:
            return self.owner.timer_steps[iso], "an earlier page of this browser"
        step = float(self._guard(self.page.evaluate,
            "() => { let best = Infinity, last = performance.now();"
            " for (let i = 0; i < 200000 && best > 0.0005; i++) { const t = performance.now();"
            " if (t > last) { best = Math.min(best, t - last); last = t; } } return best; }"))
        self.owner.timer_steps[iso] = step
        return step, "this page"

    def js_heap(self) -> tuple[int, int]:
        """(JSHeapUsedSize, JSHeapTotalSize) from CDP Performance.getMetrics.
        A CDP call to a crashed page is never answered (Performance runs in
        the renderer, and Playwright rejects only its own calls on a crash),
        so a page call goes first: it raises at once if the renderer died."""
        self.call("now")
        got = self._guard(self.cdp.send, "Performance.getMetrics")  # the browser may die in between
        metrics = {m["name"]: m["value"] for m in got["metrics"]}
        return int(metrics.get("JSHeapUsedSize", 0)), int(metrics.get("JSHeapTotalSize", 0))

    def close(self) -> None:
        if self.page is None:
            return
        try:
            self.page.close()
        except Exception:
            pass  # a crashed page or a dead browser: nothing left to close
        self.owner.forget(self.page)


def _page_message(text: str) -> str:
    """Playwright's 'Page.evaluate: Error: ...\\n    at ...' -> the error line(s)."""
    text = text.removeprefix("Page.evaluate: ")
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("at ")]
    return "\n".join(lines).strip()[:4000]
