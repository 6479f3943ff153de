"""What every benchmark shares: result rows, robust summaries, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One line of the table: a figure next to its target."""

    name: str
    target: str
    measured: str
    ok: Optional[bool]  # None: a figure shown for context, with no target
    detail: str = ""
    figures: dict = field(default_factory=dict)  # raw numbers for RESULTS.md


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> str:
    """min–max of repeated figures, so noise is visible next to the median."""
    return f"{min(xs):.3g}–{max(xs):.3g}" if len(xs) > 1 else f"{xs[0]:.3g}"


def of(xs: Sequence[float], unit: str) -> str:
    """'median of 3: 2.1–2.6 s', or '1 run' when there is nothing to spread."""
    return f"median of {len(xs)}: {spread(xs)} {unit}" if len(xs) > 1 else "1 run"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def busy_note() -> str:
    """A warning when other work competes for the CPUs (1-minute load above
    the core count): absolute figures are then slower than the code is."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return ""
    cores = os.cpu_count() or 1
    if load <= cores:
        return ""
    return (f"the machine was busy (load {load:.1f} on {cores} cores): absolute times and throughputs are "
            "pessimistic; ratios of interleaved runs are the trustworthy figures")


def machine() -> dict:
    """Enough to tell two RESULTS.md apart: CPU, cores, memory, versions, load."""
    import numpy
    import onnxruntime

    import grpc

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu, "cores": f"{os.cpu_count()} ({usable} usable)", "memory": mem,
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "grpcio": grpc.__version__, "numpy": numpy.__version__,
        "load average at start": load_average(),
    }


def table(rows: Sequence[Row]) -> str:
    header = ("benchmark", "target", "measured", "", "detail")
    cells = [(r.name, r.target, r.measured, {True: "ok", False: "MISSED", None: ""}[r.ok], r.detail) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = lambda cs: "  ".join(c.ljust(widths[i]) for i, c in enumerate(cs)).rstrip()
    return "\n".join([line(header), line(tuple("-" * w for w in widths))] + [line(c) for c in cells])


def markdown_table(rows: Sequence[Row]) -> str:
    out = ["| benchmark | target | measured | | detail |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        mark = {True: "ok", False: "**missed**", None: ""}[r.ok]
        out.append(f"| {r.name} | {r.target} | {r.measured} | {mark} | {r.detail} |")
    return "\n".join(out)


def host_cohort(root: Path, name: str, measure: str) -> Path:
    """A profiles folder under root with one host-cpu device (one ONNX
    Runtime CPU target, one intra-op thread: one core measured, as the
    benchmarks compare like with like) and a cohort `name` measuring it
    under `measure` (YAML flow text); the cohort file's path."""
    (root / "cohorts").mkdir(parents=True, exist_ok=True)
    (root / "devices").mkdir(exist_ok=True)
    (root / "devices" / "host-cpu.yaml").write_text(
        "id: host-cpu\nplatform: linux\nmatch: {driver: host}\n"
        "targets:\n  - {runtime: onnxruntime, ep: cpu, options: {intra_op_threads: 1}}\n")
    path = root / "cohorts" / f"{name}.yaml"
    path.write_text(f"name: {name}\ndevices: [host-cpu]\nmeasure: {measure}\n")
    return path
