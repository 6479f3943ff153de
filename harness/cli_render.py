"""Rendering for the CLI: progress lines and one-line errors on stderr,
tables on stdout."""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time

import typer

from harness.report.analysis_md import decision_line
from harness.report.cells import HEADER, fmt_mb, fmt_ms, status, summary_rows


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(text: str, out) -> None:
    """A rendered document to the file `out` (its folder made; the path on
    stderr), or to stdout without one."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        typer.echo(str(out), err=True)
    else:
        typer.echo(text)


def _known_errors() -> tuple:
    from harness.kernel.configfile import ConfigError
    from harness.controller.client import AgentError
    from harness.store import StoreError

    return ConfigError, AgentError, StoreError


def guarded(fn):
    """Run fn(); known failures become one line on stderr and exit code 2."""
    try:
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130)
    except _known_errors() as exc:
        fail(str(exc))


def _table(header, rows) -> str:
    widths = [len(h) for h in header]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(str(c)))
    line = lambda cells: "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(cells)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


class ProgressPrinter:
    """Receives api progress events; prints one line per meaningful change."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def _say(self, text: str) -> None:
        if not self.quiet:
            with self._lock:
                self.stream.write(text + "\n")
                self.stream.flush()

    def __call__(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "plan":
            self.total = e["jobs"] + e["gaps"]
            self._say(f"run {e['run_id']}: {e['jobs']} job(s), {e['gaps']} gap(s) on "
                      + ", ".join(f"{n} ({a})" for n, a in e["agents"].items()))
            for agent, drivers in e.get("drivers", {}).items():
                for name, ok, why in drivers:
                    if not ok:
                        self._say(f"  driver {name} on {agent} unavailable: {why}")
            for prof, devs in e.get("matched", {}).items():
                self._say(f"  {prof}: {', '.join(devs) if devs else 'no matching device'}")
        elif kind == "gap":
            self.done += 1
            self._say(f"[{self.done}/{self.total}] {e['key']}: not run — {e['message']}")
        elif kind == "upload":
            if e["models"]:
                self._say(f"  uploaded {e['models']} model(s), {e['bytes'] / 1e6:.1f} MB to {e['agent']} "
                          f"in {e['seconds']:.2f} s ({e['held']} already held)")
            else:
                self._say(f"  {e['agent']} already holds all {e['held']} model(s)")
        elif kind == "started":
            self._say(f"  → {e['key']} on {e['device']}")
        elif kind == "progress":
            now = time.monotonic()
            if self.tty or now - self._last.get(e["key"], 0) >= 5.0:
                self._last[e["key"]] = now
                self._say(f"    {e['key']}: {e['phase']} {e['samples']} samples, {e['elapsed_s']:.1f} s")
        elif kind == "result":
            self.done += 1
            r = e["record"]
            t = r.get("timing") or {}
            if r.get("error"):
                self._say(f"[{self.done}/{self.total}] {e['key']}: {status(r)} — {r['error'].get('message', '')[:300]}")
            else:
                self._say(f"[{self.done}/{self.total}] {e['key']}: p50 {fmt_ms(t.get('p50_ms'))} ms, "
                          f"p90 {fmt_ms(t.get('p90_ms'))} ms, n={t.get('n')}, "
                          f"peak {fmt_mb((r.get('memory') or {}).get('peak_bytes'))} MB")


def print_summary(outcome) -> None:
    doc = outcome.report
    print(f"run id: {outcome.run_id}")
    print(_table(HEADER, summary_rows(doc["results"])))
    line = decision_line(doc)
    if line:
        print(line)
    for p in outcome.out_files:
        print(f"wrote {p}")


def print_devices(info: dict) -> None:
    for name, a in info["agents"].items():
        print(f"agent {name} ({a['address']})")
        for d in a["drivers"]:
            print(f"  driver {d['name']}: " + ("available" if d["available"] else f"unavailable — {d['reason']}"))
    rows = []
    for d in info["devices"]:
        f = d["facts"]
        rts = "; ".join(r["label"] for r in d["runtimes"])
        state = d["state"] + (f" ({d['state_reason']})" if d["state_reason"] else "")
        rows.append([d["agent"], d["id"], d["platform"], f.get("model", ""), f.get("os_version", ""), state, rts])
    if rows:
        print(_table(["agent", "device", "platform", "model", "os", "state", "runtimes"], rows))
    else:
        print("no devices")
    # What a ready device still cannot measure, and why (a driver's `limits` fact).
    for d in info["devices"]:
        if d["facts"].get("limits"):
            print(f"{d['id']} cannot measure: {d['facts']['limits']}")


def print_runs(runs: list[dict]) -> None:
    rows = []
    for r in runs:
        started = _dt.datetime.fromtimestamp(r["started"]).strftime("%Y-%m-%d %H:%M:%S")
        who = f"{r.get('user_name') or '?'}@{r.get('host_name') or '?'}"
        if r.get("ci_job_url"):
            who += f" ({r['ci_job_url']})"
        rows.append([r["id"], r["cohort"], started, r["status"], f"{r['results']}/{r['jobs']}", who])
    print(_table(["run", "cohort", "started", "status", "results", "who"], rows) if rows else "no runs")
