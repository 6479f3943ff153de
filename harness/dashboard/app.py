"""The lab dashboard: a read-only web view of a results store.

Pages (all GET, all server-rendered HTML without a line of script):
  /                       runs, newest first, filtered by cohort / candidate / status
  /runs/{id}              one run: who ran it and where, links, and its full report
                          (the body `harness report --format html` writes)
  /runs/{id}/report.json  the same document as `harness report RUN --format json`
  /history?candidate=...  trend plots with change points (`harness history`)
  /compare?old=A&new=B    what changed between two runs (`harness compare`)
Every page links to the others: a run to its candidates' histories and to
the previous run of its cohort, a history point to its run, a comparison to
both runs. The store is opened read-only, so the database itself refuses any
write, whatever a request asks.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from harness.dashboard.auth import TokenAuth
from harness.kernel import limits

PAGE_SIZE = limits.DASHBOARD_PAGE_RUNS
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}


def run_url(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def history_url(candidate: str, device: Optional[str] = None, target: Optional[str] = None) -> str:
    q = {"candidate": candidate, **({"device": device} if device else {}), **({"target": target} if target else {})}
    return "/history?" + urlencode(q)


def compare_url(old: str, new: str) -> str:
    return "/compare?" + urlencode({"old": old, "new": new})


def _when(ts) -> str:
    if ts is None:
        return "—"
    if isinstance(ts, str):
        return ts.replace("T", " ")[:19]
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


_MAIN = re.compile(r"<main>(.*)</main>", re.S)


def report_body(doc: dict) -> tuple[str, str]:
    """(css, body) of the HTML report of a run: the dashboard shows exactly
    what report.html shows."""
    from harness.report import html as report_html

    m = _MAIN.search(report_html.render(doc))
    return report_html.CSS, (m.group(1) if m else "")


class ServerTiming:
    """Adds `Server-Timing: app;dur=MS` (W3C Server Timing) to every response:
    the time from the request to the response head, so a browser's devtools
    and the benchmark see the server's share of a page load apart from the
    network's."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - t0) * 1000
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"server-timing", f"app;dur={ms:.1f}".encode())]}
            await send(message)

        await self.app(scope, receive, timed_send)


class BadRequest(Exception):
    pass


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r}: expected a whole number") from None
    if not lo <= v <= hi:
        raise BadRequest(f"{name}={v}: expected {lo}..{hi}")
    return v


def create_app(store, token: Optional[str] = None) -> Starlette:
    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined)
    env.globals.update(run_url=run_url, history_url=history_url, compare_url=compare_url, when=_when)

    def page(name: str, status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("store", store.location.display)
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status, headers=HEADERS)

    def not_found(what: str) -> HTMLResponse:
        return page("error.html", 404, title="Not found", message=what)

    def guarded(view):
        from harness.kernel.configfile import ConfigError

        def endpoint(request: Request):
            try:
                return view(request)
            except BadRequest as exc:
                return page("error.html", 400, title="Bad request", message=str(exc))
            except ConfigError as exc:  # a stored run this harness cannot read (its records, its config)
                return page("error.html", 500, title="Cannot show this", message=str(exc))
        return endpoint

    def runs_page(request: Request):
        q = request.query_params
        cohort, candidate, status = q.get("cohort") or None, q.get("candidate") or None, q.get("status") or None
        offset = _int(request, "offset", 0, 0, 10 ** 9)
        rows = store.list_runs(limit=PAGE_SIZE + 1, cohort=cohort, candidate=candidate, status=status, offset=offset)
        more, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
        previous: dict[str, str] = {}  # run -> the run before it in its cohort, within this page
        by_cohort: dict[str, list[dict]] = {}
        for r in rows:
            by_cohort.setdefault(r["cohort"], []).append(r)
        for group in by_cohort.values():
            for newer, older in zip(group, group[1:]):
                previous[newer["id"]] = older["id"]
        base = {k: v for k, v in (("cohort", cohort), ("candidate", candidate), ("status", status)) if v}
        nav = {"newer": "/?" + urlencode({**base, "offset": max(0, offset - PAGE_SIZE)}) if offset else None,
               "older": "/?" + urlencode({**base, "offset": offset + PAGE_SIZE}) if more else None}
        return page("runs.html", title="Runs", runs=rows, facets=store.facets(), previous=previous,
                    filters={"cohort": cohort, "candidate": candidate, "status": status}, nav=nav)

    def run_page(request: Request):
        from harness.report.document import build_report

        run_id = request.path_params["run_id"]
        run = store.get_run(run_id)
        if run is None:
            return not_found(f"no run {run_id!r} in this store")
        doc = build_report(store, run_id)
        css, body = report_body(doc)
        series = sorted({(r["candidate"], r["device"].get("profile"), r.get("target") or "")
                         for r in doc["results"]})
        earlier = [r for r in store.list_runs(limit=limits.STORE_MAX_LIST, cohort=run["cohort"])
                   if (r["started"], r["id"]) < (run["started"], run["id"])]
        return page("run.html", title=f"Run {run_id}", run=run, series=series, report_css=css, report=body,
                    previous=earlier[0]["id"] if earlier else None)

    def report_json(request: Request):
        from harness.report.document import build_report, json_text

        run_id = request.path_params["run_id"]
        if store.get_run(run_id) is None:
            return not_found(f"no run {run_id!r} in this store")
        return Response(json_text(build_report(store, run_id)), media_type="application/json", headers=HEADERS)

    def history_page(request: Request):
        from harness.analysis.history import METRICS, from_store
        from harness.report import history_html

        q = request.query_params
        candidate = q.get("candidate") or ""
        metric = q.get("metric") or "p90"
        if metric not in METRICS:
            raise BadRequest(f"metric={metric!r}: expected {' or '.join(METRICS)}")
        last = _int(request, "last", 100, 1, limits.HISTORY_MAX_RUNS)
        facets = store.facets()
        doc = None
        if candidate:
            doc = from_store(store, candidate, profile=q.get("device") or None, target=q.get("target") or None,
                             last=last, metric=metric)
        blocks = [history_html.series_html(doc, k, s, run_url) for k, s in enumerate(doc["series"])] if doc else []
        return page("history.html", title=f"History of {candidate}" if candidate else "History", doc=doc,
                    blocks=blocks, candidates=facets["candidates"], candidate=candidate, metric=metric, last=last,
                    device=q.get("device") or "", target=q.get("target") or "")

    def compare_page(request: Request):
        from harness.analysis.compare import compare_docs
        from harness.report.document import build_report

        q = request.query_params
        old, new = q.get("old") or "", q.get("new") or ""
        recent = store.list_runs(limit=PAGE_SIZE)
        cmp = None
        if old and new:
            for rid in (old, new):
                if store.get_run(rid) is None:
                    return not_found(f"no run {rid!r} in this store")
            threshold = q.get("threshold") or "0.05"
            try:
                t = float(threshold)
            except ValueError:
                raise BadRequest(f"threshold={threshold!r}: expected a fraction such as 0.05") from None
            if not 0 <= t <= 10:
                raise BadRequest(f"threshold={t}: expected 0..10")
            from harness.analysis import noise

            o, n = build_report(store, old), build_report(store, new)
            keys = [noise.device_target(r) for d in (o, n) for r in d["results"] if not r.get("error")]
            cmp = compare_docs(o, n, threshold=t, noise=noise.from_store(store, keys))
        return page("compare.html", title="Compare runs", cmp=cmp, old=old, new=new, recent=recent)

    routes = [Route("/", guarded(runs_page)), Route("/runs/{run_id}", guarded(run_page)),
              Route("/runs/{run_id}/report.json", guarded(report_json)),
              Route("/history", guarded(history_page)), Route("/compare", guarded(compare_page))]
    middleware = [Middleware(ServerTiming)] + ([Middleware(TokenAuth, token=token)] if token else [])
    return Starlette(routes=routes, middleware=middleware)
