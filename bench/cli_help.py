"""`harness --help`: the installed console script, start to exit.

Heavy modules (grpc, numpy, onnxruntime, pydantic...) must load only when a
command needs them; the figure is the median wall time of several runs, next
to a bare `python -c pass` for the interpreter's own share.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, Row, median, of

RUNS = 9
# Modules whose import at `--help` would mean the CLI loads what only commands need.
HEAVY = ("grpc", "numpy", "onnxruntime", "onnx", "pydantic", "yaml", "playwright", "adbutils", "coremltools",
         "torch", "harness._proto", "agents")


def _wall(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): on a shared machine the CPU
    time shows what the command costs, the wall time what a user waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT, timeout=60)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports() -> list[str]:
    """Heavy top-level packages loaded by the CLI's start-up and command registration."""
    code = ("import sys; from harness.cli import app; from harness.commands import register_all; "
            "register_all(app); print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         timeout=60).stdout.split()
    return [h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in out)]


def run(tmp: Path, quick: bool = False) -> list[Row]:
    exe = str(Path(sys.executable).parent / "harness")
    n = 3 if quick else RUNS
    helps, cpus, bare = [], [], []
    _wall([exe, "--help"])  # the first run reads .pyc files from disk
    for _ in range(n):
        wall, cpu = _wall([exe, "--help"])
        helps.append(wall)
        cpus.append(cpu)
        bare.append(_wall([sys.executable, "-c", "pass"])[0])
    h = median(helps)
    heavy = heavy_imports()
    return [Row("`harness --help`", "≤ 0.5 s", f"{h:.3f} s", h <= 0.5 and not heavy,
                f"{of(helps, 's')} wall, {median(cpus):.3f} s CPU; python -c pass "
                f"{median(bare):.3f} s; heavy modules loaded: {', '.join(heavy) if heavy else 'none'}",
                {"seconds": helps, "cpu_s": cpus, "python_s": bare, "heavy": heavy})]
