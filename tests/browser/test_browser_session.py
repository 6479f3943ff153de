"""A kept Chromium and its pages: every session's page is a new tab whose
origin's storage is cleared first, so nothing one page stored (storage,
cookies, IndexedDB, Cache Storage, globals) is seen by the next on the same
origin, while ONNX Runtime Web's files stay in the profile's cache; and the
pool keys browsers by executable, its build and flags."""

from __future__ import annotations

import os

import browserkit as kit
import pytest

# Leaves every kind of state a page could carry over: a global, storage of
# each kind, a cookie, an IndexedDB database and a Cache Storage entry.
WRITE = """async () => {
  window.__leak = 1;
  localStorage.setItem('k', 'v'); sessionStorage.setItem('k', 'v');
  document.cookie = 'k=v; max-age=3600';
  await new Promise((ok, bad) => { const r = indexedDB.open('leak', 1);
    r.onupgradeneeded = () => r.result.createObjectStore('s'); r.onsuccess = ok; r.onerror = bad; });
  await (await caches.open('leak')).put('/x', new Response('v'));
}"""
READ = """async () => ({
  global: window.__leak ?? null, local: localStorage.getItem('k'), session: sessionStorage.getItem('k'),
  cookie: document.cookie, idb: (await indexedDB.databases()).map(d => d.name), caches: await caches.keys(),
})"""
EMPTY = {"global": None, "local": None, "session": None, "cookie": "", "idb": [], "caches": []}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    kit.need_browser()
    from agents.browser import locate
    from agents.browser.session import Browser

    b = Browser(locate.find_chromium().path, tmp_path_factory.mktemp("kept"))
    yield b
    b.close()


def test_a_page_sees_nothing_an_earlier_page_of_the_same_origin_left(browser):
    from agents.browser.server import PageServer
    from agents.browser.session import BrowserPage

    srv = PageServer()  # one origin for both pages, as if sessions shared it
    try:
        first = BrowserPage(browser, srv.url)
        try:
            first.page.evaluate(WRITE)
            left = first.page.evaluate(READ)
            assert left["global"] == 1 and left["local"] == "v" and "k=v" in left["cookie"]
            assert left["idb"] == ["leak"] and left["caches"] == ["leak"]
        finally:
            first.close()
        second = BrowserPage(browser, srv.url)
        try:
            assert second.page.evaluate(READ) == EMPTY
            assert second.page.evaluate("() => crossOriginIsolated") is True
            second.page.evaluate(WRITE)
        finally:
            second.close()
        # The tab that clears storage closed under it: another one clears.
        for tab in browser.profile.pages:
            tab.close()
        third = BrowserPage(browser, srv.url)
        try:
            assert third.page.evaluate(READ) == EMPTY
        finally:
            third.close()
    finally:
        srv.close()
    assert browser.pages >= 3 and browser.dead() == ""


def test_a_page_error_while_the_page_opens_is_captured(browser):
    """Console and page errors are taken at the profile's level, so what a
    page reports before its Page object reaches the driver is kept."""
    from agents.browser.server import PageServer
    from agents.browser.session import BrowserPage

    srv = PageServer()
    script = "console.error('early-' + location.port); window.addEventListener('load', () => { throw new Error('boom-at-load'); });"
    try:
        page = BrowserPage(browser, srv.url, init_script=script)
        try:
            assert ("error", f"early-{srv.port}") in page.console.lines
            assert any("boom-at-load" in e for e in page.console.page_errors)
        finally:
            page.close()
    finally:
        srv.close()


def test_pool_keys_browsers_by_executable_build_and_flags(tmp_path):
    from agents.browser.pool import Pool

    exe = tmp_path / "chromium"
    exe.write_text("")
    pool = Pool(tmp_path / "work")
    plain = pool.get(str(exe), ())
    assert pool.get(str(exe), ()) is plain
    flagged = pool.get(str(exe), ("--use-angle=vulkan",))
    assert flagged is not plain and pool.get(str(exe), ("--use-angle=vulkan",)) is flagged
    os.utime(exe, (1, 1))  # rebuilt in place: a new browser, the stale ones let go
    rebuilt = pool.get(str(exe), ())
    assert rebuilt is not plain and list(pool._keepers.values()) == [rebuilt]
    assert Pool(tmp_path / "w2", enabled=False).get(str(exe), ()) is None
    pool.close()


@pytest.mark.parametrize("reading", ["js_heap", "timer_resolution_ms"])
def test_a_browser_killed_between_a_page_call_and_the_next_reading_is_a_crash(tmp_path, reading):
    """The browser dies after the page has answered and before a CDP or
    evaluate call of a reading: Playwright raises TargetClosedError there,
    which is the session's crash (not a runner error)."""
    kit.need_browser()
    from concurrent.futures import ThreadPoolExecutor

    # A thread of its own: Playwright's sync API runs one instance per
    # thread, and the module's browser holds this one.
    with ThreadPoolExecutor(1) as pool:
        kind, message = pool.submit(_kill_between, tmp_path, reading).result(timeout=120)
    assert kind == "crash" and "the browser exited" in message, (kind, message)


def _kill_between(tmp_path, reading) -> tuple[str, str]:
    import signal

    from agents.browser import locate
    from agents.browser.server import PageServer
    from agents.browser.session import Browser, BrowserPage, PageFailed

    b = Browser(locate.find_chromium().path, tmp_path / "kept")
    srv = PageServer()
    try:
        page = BrowserPage(b, srv.url)
        real_call = page.call

        def call_then_kill(name, *args):  # the page answers, then the browser goes
            out = real_call(name, *args)
            os.kill(b.pid, signal.SIGKILL)
            return out

        page.call = call_then_kill
        try:
            if reading == "js_heap":
                page.js_heap()
            else:
                os.kill(b.pid, signal.SIGKILL)
                page.timer_resolution_ms()
        except PageFailed as exc:
            return exc.kind, exc.message
        finally:
            page.close()
        return "", "no failure"
    finally:
        srv.close()
        b.close()


def test_the_browser_opens_no_port_and_its_devtools_relay_admits_only_its_own_client(browser):
    """DevTools drives the whole browser (file:// pages as the agent's user),
    so no other local user may reach it: Chromium listens on no port (its
    DevTools is a pipe), and the loopback relay to it answers only its one
    secret path, one client (ours), and no page Origin."""
    import urllib.error
    import urllib.request

    import psutil
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    chromium = [psutil.Process(browser.pid), *psutil.Process(browser.pid).children(recursive=True)]
    listening = [c.laddr for p in chromium for c in p.net_connections(kind="all") if c.status == psutil.CONN_LISTEN]
    assert listening == [], listening
    assert "--remote-debugging-pipe" in browser.argv and not any("debugging-port" in a for a in browser.argv)

    base = f"127.0.0.1:{browser.pipe.port}"
    for path in ("/json/version", "/json/list", "/devtools/browser/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{base}{path}", timeout=10)
        assert refused.value.code == 404, path

    def status(url, **headers):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, open_timeout=10).close()
        return refused.value.response.status_code, refused.value.response.body.decode().strip()

    secret = browser.pipe._path
    assert status(f"ws://{base}{secret[:-1]}") == (404, "not found")
    assert status(f"ws://{base}{secret}", Origin=f"http://{base}") == (403, "forbidden")
    assert status(f"ws://{base}{secret}") == (403, "one client at a time")  # Playwright holds it
    assert browser.dead(ask=True) == ""


def test_devtools_messages_larger_than_a_pipe_read_pass_whole_both_ways(browser):
    """The relay splits the pipe's byte stream at each message's NUL, across
    reads (1 MiB each), and sets no WebSocket size cap: a page result or a
    script argument of several megabytes arrives whole."""
    from agents.browser.server import PageServer
    from agents.browser.session import BrowserPage

    srv = PageServer()
    try:
        page = BrowserPage(browser, srv.url)
        try:
            big = "é" * (3 << 20)  # 6 MiB of UTF-8
            assert page.page.evaluate("(s) => s.length", big) == len(big)
            back = page.page.evaluate("() => 'ü'.repeat(3 << 20) + '!'")
            assert len(back) == (3 << 20) + 1 and back.endswith("ü!")
        finally:
            page.close()
    finally:
        srv.close()
