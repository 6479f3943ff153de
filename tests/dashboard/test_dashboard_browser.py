"""The dashboard in real headless Chromium (Debian's, through Playwright):
every page reachable by its links renders, without a console error, with
its plots, and the figures match `harness report`."""

import os
import shutil
from collections import deque
from urllib.parse import urlsplit

import pytest

from harness.report.document import build_report
from harness.store.opening import open_store

CHROMIUM = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MAX_PAGES = 80  # the fixture's store has ~40 distinct pages; a bound keeps a link loop from running forever


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield b
        b.close()


def expected_plots(path: str) -> list[str]:
    if path.startswith("/runs/") and not path.endswith(".json"):
        return ["svg#plot-latency", "svg#plot-p90-budget", "svg#plot-memory"]
    return []


def check_history(page, path: str) -> int:
    """Every series of a history page has its trend plot, or says it has no
    measured run (a device no run reached); returns the plots seen."""
    sections = page.locator("section.series")
    assert sections.count() >= 1, f"{path}: no series"
    plots = 0
    for i in range(sections.count()):
        sec = sections.nth(i)
        n = sec.locator("svg.plot.history").count()
        assert n == 1 or "No measured run." in sec.inner_text(), f"{path}: series {i} has neither plot nor note"
        plots += n
    return plots


def test_every_linked_page_renders_without_console_errors(dashboard, browser):
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    origin = dashboard.base
    queue, seen, visited = deque(["/"]), {"/"}, []
    history_plots = 0
    while queue and len(visited) < MAX_PAGES:
        path = queue.popleft()
        resp = page.goto(origin + path, wait_until="load", timeout=60_000)
        assert resp is not None and resp.status == 200, f"{path}: HTTP {resp.status if resp else 'none'}"
        visited.append(path)
        if path.endswith(".json"):
            continue
        assert page.title().endswith("· harness"), path
        for sel in expected_plots(path):
            assert page.locator(sel).count() >= 1, f"{path}: no {sel}"
        if path.startswith("/history?"):
            history_plots += check_history(page, path)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            u = urlsplit(href)
            if u.scheme or u.netloc or not href.startswith("/"):
                continue  # a CI job's page: not ours to render
            target = u.path + (f"?{u.query}" if u.query else "")
            if target not in seen:
                seen.add(target)
                queue.append(target)
    assert problems == []
    assert history_plots >= 2  # teacher and student on host-cpu, at least
    assert not queue, f"more than {MAX_PAGES} pages: a link loop?"
    kinds = {p.split("?")[0].rsplit("/", 1)[0] if p.startswith("/runs/") else p.split("?")[0] for p in visited}
    assert {"/", "/runs", "/history", "/compare"} <= kinds, kinds
    assert all(f"/runs/{rid}" in visited for rid in dashboard.runs)


def test_run_page_figures_are_the_reports(dashboard, browser):
    rid = dashboard.runs[-1]
    s = open_store(dashboard.url, readonly=True)
    try:
        doc = build_report(s, rid)
    finally:
        s.close()
    page = browser.new_page()
    page.goto(f"{dashboard.base}/runs/{rid}", wait_until="load")
    text = page.inner_text("main")
    for r in doc["results"]:
        if r["timing"].get("p90_ms"):
            assert f"{r['timing']['p90_ms']:.3f}" in text or f"{r['timing']['p90_ms']:.3g}" in text, r["job"]
    assert doc["decision"]["label"] in text
    # The history plot of a candidate: one point per run, each a link to its run.
    page.goto(f"{dashboard.base}/history?candidate=teacher&device=host-cpu", wait_until="load")
    assert page.locator("svg.plot.history a circle.p90").count() == len(dashboard.runs)
    page.locator("svg.plot.history a circle.p90").first.click()
    page.wait_for_load_state("load")
    assert "/runs/" in page.url and page.locator("svg#plot-latency").count() == 1
