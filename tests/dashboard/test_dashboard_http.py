"""The dashboard over HTTP (real uvicorn, real store on both backends): pages,
the same report content as report.html, read-only, and its token."""

import base64
import re

import httpx
import pytest

from harness.dashboard.app import report_body
from harness.dashboard.serve import ServeError, make_server
from harness.report.document import build_report, json_text
from harness.store.opening import open_store

GAP_RUN = "20261201-201024-90ba"


def get(d, path, **kw):
    return httpx.get(d.base + path, timeout=60, **kw)


def test_runs_page_lists_and_filters(dashboard):
    r = get(dashboard, "/")
    assert r.status_code == 200 and r.headers["content-security-policy"].startswith("default-src 'none'")
    for rid in dashboard.runs:
        assert f'href="/runs/{rid}"' in r.text
    only = get(dashboard, "/?cohort=fixture-gap").text
    assert GAP_RUN in only and "20261201-201002-e266" not in only
    assert "No runs match" in get(dashboard, "/?cohort=nope").text
    assert 'href="/history?candidate=teacher"' in r.text
    assert "/compare?old=20261201-201002-e266&amp;new=20261201-201006-c747" in r.text


def test_run_page_shows_what_report_html_shows(dashboard):
    r = get(dashboard, f"/runs/{GAP_RUN}")
    assert r.status_code == 200
    s = open_store(dashboard.url, readonly=True)
    try:
        doc = build_report(s, GAP_RUN)
    finally:
        s.close()
    _css, body = report_body(doc)
    main = re.search(r"<main>(.*)</main>", r.text, re.S).group(1)
    assert main == body and 'id="plot-latency"' in main
    assert "history?candidate=teacher&amp;device=pixel-x" in r.text  # links to each result's history
    js = get(dashboard, f"/runs/{GAP_RUN}/report.json")
    assert js.headers["content-type"].startswith("application/json") and js.text == json_text(doc)


def test_history_and_compare_pages(dashboard):
    h = get(dashboard, "/history?candidate=teacher&device=host-cpu")
    assert h.status_code == 200 and 'class="plot history"' in h.text
    for rid in dashboard.runs:
        assert f'href="/runs/{rid}"' in h.text  # every point links to its run
    c = get(dashboard, "/compare?old=20261201-201002-e266&new=20261201-201006-c747")
    assert c.status_code == 200 and 'id="compare-rows"' in c.text and "host-cpu/teacher" in c.text


def test_bad_requests_are_pages_not_tracebacks(dashboard):
    assert get(dashboard, "/runs/nope").status_code == 404
    r = get(dashboard, "/history?candidate=teacher&last=0")
    assert r.status_code == 400 and "last=0: expected 1.." in r.text
    assert get(dashboard, "/history?candidate=teacher&metric=p75").status_code == 400
    assert get(dashboard, "/compare?old=a&new=b").status_code == 404
    assert get(dashboard, "/compare?old=20261201-201002-e266&new=20261201-201006-c747&threshold=x").status_code == 400
    assert httpx.post(dashboard.base + "/", timeout=30).status_code == 405  # read-only: no verb but GET


def test_the_store_behind_the_dashboard_is_read_only(dashboard):
    with pytest.raises(Exception, match="(?i)read"):
        dashboard.store.put_blob(GAP_RUN, "x", b"1")


def test_beyond_loopback_a_token_is_required(tmp_path, store_url):
    open_store(store_url).close()
    with pytest.raises(ServeError, match="not a loopback address, so the dashboard needs --token-file"):
        make_server(store_url, "0.0.0.0:0")
    with pytest.raises(ServeError, match="expected HOST:PORT"):
        make_server(store_url, "8080")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ServeError, match="the file is empty"):
        make_server(store_url, "127.0.0.1:0", empty)


def test_token_auth(tmp_path, store_url):
    from dashkit import Dashboard

    open_store(store_url).close()
    token = tmp_path / "token"
    token.write_text("lab-s3cret\n")
    d = Dashboard(store_url, token_file=token)
    try:
        assert get(d, "/").status_code == 401
        assert get(d, "/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = get(d, "/", headers={"Authorization": "Bearer lab-s3cret"})
        assert r.status_code == 200 and "lab-s3cret" not in r.text
        basic = base64.b64encode(b"anyone:lab-s3cret").decode()
        assert get(d, "/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert get(d, "/", headers={"Authorization": "Basic !!!"}).status_code == 401
    finally:
        d.stop()


def test_harness_serve_command(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from dashkit import lab_store
    from labkit import harness_cli

    store = tmp_path / "lab.sqlite"
    lab_store(str(store), tmp_path)
    p = harness_cli("serve", "--store", store, "--listen", "0.0.0.0:0", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("error: --listen 0.0.0.0:0: not a loopback address")
    port_file = tmp_path / "port"
    exe = Path(sys.executable).parent / "harness"
    proc = subprocess.Popen([str(exe), "serve", "--store", str(store), "--listen", "127.0.0.1:0",
                             "--port-file", str(port_file)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no port file"
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port_file.read_text()}"
        r = httpx.get(base + "/", timeout=30)
        assert r.status_code == 200 and GAP_RUN in r.text and "app;dur=" in r.headers["server-timing"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode in (0, 130, -signal.SIGINT)
