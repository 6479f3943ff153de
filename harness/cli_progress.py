"""Run progress for people: what is done, what runs now, when it will end.

`Tracker` is pure (events in, a snapshot out, the clock injected). Two views
read it: `PlainView` prints one line per change — the form for CI logs and
pipes — and `LiveView` keeps a live panel on a terminal (rich) above which
the same milestone lines scroll. `progress_view` picks one.

The ETA comes from the plan: the `plan` event carries each job's estimated
seconds (harness.controller.estimate: a simulated device's latency model,
else the measurement policy's warm-up plus minimum time) and the devices that
may run it. A device runs one job at a time and devices run in parallel, so
the ETA is the longest device lane of what remains; the estimates are scaled
by how long finished jobs really took against theirs (load, process start and
an interval that needs more than the minimum are not in the estimate).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from harness.controller.estimate import fmt_s
from harness.report.cells import fmt_mb, fmt_ms, status

# Without a TTY, a running job's progress line is repeated at most this often
# (a CI log stays readable; a live terminal shows every update in place).
PLAIN_PROGRESS_EVERY_S = 5.0
# The live panel's redraws per second: smooth enough for a sample counter,
# cheap on a loaded machine.
LIVE_REFRESH_PER_S = 4


@dataclass
class Running:
    key: str
    device: str
    since: float
    phase: str = "queued"
    samples: int = 0


@dataclass
class Tracker:
    clock: Callable[[], float] = time.monotonic
    total: int = 0
    done: int = 0
    run_id: str = ""
    started_at: Optional[float] = None
    estimates: dict = field(default_factory=dict)  # job key -> (seconds, eligible device keys)
    running: dict = field(default_factory=dict)  # job key -> Running
    finished: set = field(default_factory=set)
    ratios: list = field(default_factory=list)  # actual / estimated seconds of finished jobs
    told: set = field(default_factory=set)  # (profile, gap message) already printed in full

    def feed(self, e: dict) -> None:
        kind = e.get("event")
        now = self.clock()
        if kind == "plan":
            self.total = e["jobs"] + e["gaps"]
            self.run_id = e.get("run_id", "")
            self.started_at = now
            self.estimates = {k: (float(v["s"]), tuple(v.get("devices") or ())) for k, v in
                              (e.get("estimates") or {}).items()}
        elif kind == "gap":
            self.done += 1
        elif kind in ("queued", "started"):
            r = self.running.get(e["key"])
            if r is None or r.device != e.get("device"):
                self.running[e["key"]] = Running(e["key"], e.get("device", ""), now)
            if kind == "started":
                # A device runs one session at a time: a job whose session
                # ended there waits for its next one (jobs are measured as
                # several sessions, interleaved).
                for other in self.running.values():
                    if other.device == e.get("device") and other.key != e["key"] and other.phase != "queued":
                        other.phase = "waiting"
                self.running[e["key"]].phase = "started"
                if r is None or r.phase == "queued":
                    self.running[e["key"]].since = now
        elif kind == "progress":
            r = self.running.setdefault(e["key"], Running(e["key"], e.get("device", ""), now))
            r.phase, r.samples = e.get("phase", r.phase), int(e.get("samples") or 0)
        elif kind == "result":
            self.done += 1
            r = self.running.pop(e["key"], None)
            self.finished.add(e["key"])
            est = self.estimates.get(e["key"])
            if r is not None and est and est[0] > 0 and r.phase != "queued":
                self.ratios.append((now - r.since) / est[0])

    def scale(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 1.0

    def eta_s(self) -> Optional[float]:
        """Seconds until the last job ends, or None without estimates."""
        if not self.estimates:
            return None
        now, k = self.clock(), self.scale()
        lanes: dict[str, float] = {}
        for r in self.running.values():
            est = self.estimates.get(r.key, (0.0, ()))[0] * k
            left = est if r.phase == "queued" else max(0.0, est - (now - r.since))  # a waiting job's clock runs on
            lanes[r.device] = lanes.get(r.device, 0.0) + left
        for key, (sec, devices) in self.estimates.items():
            if key in self.finished or key in self.running:
                continue
            options = list(devices) or ["?"]
            best = min(options, key=lambda d: lanes.get(d, 0.0))
            lanes[best] = lanes.get(best, 0.0) + sec * k
        return max(lanes.values(), default=0.0)

    def headline(self) -> str:
        now = self.clock()
        parts = [f"jobs {self.done}/{self.total} done"]
        if self.started_at is None:
            return "preparing: loading the models, reaching the agents"
        busy = sum(1 for r in self.running.values() if r.phase not in ("queued", "waiting"))
        if busy:
            parts.append(f"{busy} running")
        if self.started_at is not None:
            parts.append(f"elapsed {fmt_s(now - self.started_at)}")
        eta = self.eta_s()
        if eta is not None and self.done < self.total:
            parts.append(f"ETA ~{fmt_s(eta)}" + ("" if self.ratios else " (from the plan)"))
        return " · ".join(parts)

    def running_lines(self) -> list[str]:
        now = self.clock()
        out = []
        for r in sorted(self.running.values(), key=lambda x: x.since):
            what = r.phase if r.phase in ("queued", "waiting") else f"{r.phase} {r.samples:,} samples"
            out.append(f"  → {r.key} on {r.device} · {what} · {fmt_s(now - r.since)}")
        return out


def milestone(e: dict, t: Tracker) -> list[str]:
    """The lines an event prints in either view (progress ticks excepted)."""
    kind = e.get("event")
    if kind == "plan":
        lines = [f"run {e['run_id']}: {e['jobs']} job(s), {e['gaps']} gap(s) on "
                 + ", ".join(f"{n} ({a})" for n, a in e["agents"].items())]
        for agent, drivers in (e.get("drivers") or {}).items():
            for name, ok, why in drivers:
                if not ok:
                    lines.append(f"  driver {name} on {agent} unavailable: {why}")
        causes = e.get("causes") or {}
        for prof, devs in (e.get("matched") or {}).items():
            lines.append(f"  {prof}: " + (", ".join(devs) if devs else
                                          "no matching device" + (f" ({causes[prof]})" if causes.get(prof) else "")))
        return lines
    if kind == "gap":
        # The whole reason once per profile; its other rows say it briefly.
        seen = (e.get("profile"), e["message"]) in t.told
        t.told.add((e.get("profile"), e["message"]))
        brief = e.get("cause") or str(e.get("kind", "")).replace("_", " ")
        return [f"[{t.done}/{t.total}] {e['key']}: not run — " + (f"{brief} (as above)" if seen else e["message"])]
    if kind == "upload":
        if e["models"]:
            return [f"  uploaded {e['models']} model(s), {e['bytes'] / 1e6:.1f} MB to {e['agent']} "
                    f"in {e['seconds']:.2f} s ({e['held']} already held)"]
        return [f"  {e['agent']} already holds all {e['held']} model(s)"]
    if kind == "started":
        return [f"  → {e['key']} on {e['device']}"]
    if kind == "warning":
        return [f"warning: {e['message']}"]
    if kind == "result":
        r = e["record"]
        tm = r.get("timing") or {}
        if r.get("error"):
            return [f"[{t.done}/{t.total}] {e['key']}: {status(r)} — {r['error'].get('message', '')[:300]}"]
        flag = "" if (r.get("validity") or {}).get("stable", True) else " (unstable)"
        return [f"[{t.done}/{t.total}] {e['key']}: p50 {fmt_ms(tm.get('p50_ms'))} ms, p90 {fmt_ms(tm.get('p90_ms'))} ms, "
                f"n={tm.get('n')}, peak {fmt_mb((r.get('memory') or {}).get('peak_bytes'))} MB{flag}"]
    return []


class PlainView:
    """One line per meaningful change, for logs and pipes."""

    def __init__(self, stream=None, quiet: bool = False, clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tracker = Tracker(clock)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def _say(self, lines: list[str]) -> None:
        if not self.quiet and lines:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()

    def __call__(self, e: dict) -> None:
        with self._lock:
            self.tracker.feed(e)
            if e.get("event") == "progress":
                now = self.tracker.clock()
                if now - self._last.get(e["key"], float("-inf")) >= PLAIN_PROGRESS_EVERY_S:
                    self._last[e["key"]] = now
                    self._say([f"    {e['key']}: {e['phase']} {e['samples']} samples, {e['elapsed_s']:.1f} s"])
                return
            lines = milestone(e, self.tracker)
            if e.get("event") == "result" and self.tracker.eta_s() is not None and self.tracker.done < self.tracker.total:
                lines = [lines[0] + f" · ETA ~{fmt_s(self.tracker.eta_s())}"] + lines[1:]
            self._say(lines)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class LiveView:
    """A live panel on a terminal: the headline (jobs done / total, elapsed,
    ETA) and every running job's phase, samples and time; milestone lines
    scroll above it. The panel goes away when the run ends."""

    def __init__(self, stream=None, clock: Callable[[], float] = time.monotonic):
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False, markup=False)
        self.tracker = Tracker(clock)
        self._lock = threading.Lock()
        self._live = None

    def _render(self):
        from rich.text import Text

        with self._lock:
            lines = [self.tracker.headline()] + self.tracker.running_lines()
        # One terminal row per line: long job keys are cut, not wrapped.
        return Text("\n".join(lines), no_wrap=True, overflow="ellipsis")

    def __call__(self, e: dict) -> None:
        with self._lock:
            self.tracker.feed(e)
            lines = [] if e.get("event") in ("progress", "started", "queued") else milestone(e, self.tracker)
        for line in lines:
            self.console.print(line, soft_wrap=True)

    def __enter__(self):
        from rich.live import Live

        self._live = Live(console=self.console, get_renderable=self._render, refresh_per_second=LIVE_REFRESH_PER_S,
                          transient=True, redirect_stdout=False, redirect_stderr=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None


def progress_view(quiet: bool = False, stream=None):
    """A live panel on an interactive terminal, plain lines otherwise (CI,
    pipes, TERM=dumb, HARNESS_PROGRESS=plain), nothing with --quiet."""
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    plain = os.environ.get("HARNESS_PROGRESS") == "plain" or os.environ.get("TERM") == "dumb"
    if quiet or not tty or plain:
        return PlainView(stream, quiet=quiet)
    return LiveView(stream)
