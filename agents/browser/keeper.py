"""The process that keeps one Chromium between sessions and jobs.

`python -m agents.browser.keeper DIR` reads DIR/keeper.json (executable,
extra_args), starts Chromium with Playwright attached (agents.browser.session),
says `{"keeper": "ready", ...}` on stdout, then serves one request per stdin
line, `{"session": N, "kind": "job"|"probe", "dir": JOB_DIR}`: `{"keeper":
"taken", "session": N}` at once (a keeper that ends before it says so never
began the session, and the driver gives it to a new keeper), then a session
in a fresh page (agents.browser.runner, session.BrowserPage), its
progress lines on stdout as a spawned runner prints them, then `{"keeper":
"done", "session": N}`. One request at a time: the driver sends the next only after
"done".

Why a process of its own and not the agent: Playwright's sync API belongs to
the thread that started it (the agent calls drivers from many threads), and
the agent ends a hung page by killing this process's group, Chromium with
it (pool.py relaunches on the next session). A page that crashes costs only
its session: its renderer was its own. A browser found dead when a request
comes (killed, crashed) is started again before the session, and the row
says so. Ending: stdin closed (the agent closing its pool, or the agent
gone) closes the browser; should this process outlive its parent while
stuck in a page, a watcher thread kills the group.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from agents.browser import runner
from agents.browser.session import Browser

# How often the watcher looks for the agent (a re-parented process has lost it).
PARENT_POLL_S = 0.5


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _watch_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os.killpg(0, signal.SIGKILL)  # this process, Playwright's driver and Chromium

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


_launches = itertools.count(1)


def _launch(spec: dict, work: Path) -> Browser:
    """A browser in a new profile folder: one relaunched after a death
    starts from nothing the dead one left (its locks)."""
    for old in work.glob("launch-*"):
        shutil.rmtree(old, ignore_errors=True)
    folder = work / f"launch-{next(_launches)}"
    folder.mkdir()
    return Browser(spec["executable"], folder, extra_args=tuple(spec.get("extra_args", ())))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m agents.browser.keeper DIR\n")
        return 2
    work = Path(argv[0])
    spec = json.loads((work / "keeper.json").read_text())
    _watch_parent()
    try:
        browser = _launch(spec, work)
        # Built once here (it imports onnx), so no session pays for it.
        runner.init_model_bytes()
        from agents.browser.server import PageServer

        # One origin for every session: see server.py.
        server = PageServer()
    except Exception as exc:
        _say({"keeper": "failed", "message": f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"})
        return 3
    _say({"keeper": "ready", "pid": browser.pid, "launch_s": round(browser.launch_s, 3),
          "product": browser.product.get("product", browser.version), "argv": browser.argv[1:]})
    try:
        for line in sys.stdin:
            req = json.loads(line)
            t0 = time.monotonic()
            _say({"keeper": "taken", "session": req["session"]})
            about = {"kept": True, "pid": browser.pid, "pages_before": browser.pages}
            jd = Path(req["dir"])
            dead = browser.dead(ask=True)
            if dead:
                browser.close()
                try:
                    browser = _launch(spec, work)
                except Exception as exc:
                    # A row that says why; the next session starts a new keeper.
                    runner.unstarted(jd, req["kind"], exc, t0)
                    _say({"keeper": "done", "session": req["session"]})
                    return 3
                about = {"kept": False, "pid": browser.pid, "pages_before": 0, "relaunched_because": dead[:400],
                         "launch_s": round(browser.launch_s, 3)}
            if req["kind"] == "probe":
                runner.probe(jd, browser, server)
            else:
                runner.job(jd, browser, t0, about, server)
            _say({"keeper": "done", "session": req["session"]})
    finally:
        browser.close()
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
