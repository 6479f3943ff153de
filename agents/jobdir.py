"""The job folder a driver shares with its runner child process.

Driver side: `write_probes`, then run the child, then `collect` turns what the
child left (or did not leave) into a DriverResult. Runner side: `read_probes`
and `finish`. Arrays travel as npz entries named "<probe index>/<tensor
name>"; the result as result.json, written atomically so a crash mid-write
never looks like a result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from agents.contract import DriverResult, JobError, Memory, Placement, Validity
from harness.kernel import arrays, procs


def write_probes(jd: Path, probes: Sequence[Mapping[str, Any]]) -> None:
    arrays.save(jd / "probes.npz", probes)


def read_probes(jd: Path) -> list[dict]:
    return arrays.load(jd / "probes.npz")


def finish(jd: Path, result: dict, outputs: Mapping[str, Any]) -> None:
    """Runner side: write the outputs ("i/name" keys) and the result."""
    result.pop("_stage", None)
    if outputs:
        arrays.save_flat(jd / "outputs.npz", outputs)
    tmp = jd / "result.json.tmp"
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, jd / "result.json")


def run_runner(module_args: Sequence[str], jd: Path, timeout_s: float, progress, cancel,
               python: Optional[str] = None, env: Optional[dict] = None,
               warm: Optional[Callable[..., Optional[procs.Finished]]] = None) -> tuple[procs.Finished, str]:
    """Run `python -m <module_args...>` as the job's runner, relaying its
    JSON progress lines; returns how it ended and the last phase it reported
    (where a crash or timeout happened). `python` and `env` default to this
    interpreter and procs.child_env() (the host driver passes a runtime
    environment's own). `warm(timeout_s=, cancel=, on_line=, stderr_path=)`,
    when given, is tried first (a runner forked from a warm template,
    agents/host/warm.py); None from it means nothing started, so the runner
    is spawned."""
    import sys

    phase = {"name": "load"}

    def on_line(line: str) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return  # a native library writing to stdout is not the runner speaking
        if not isinstance(msg, dict):
            return
        phase["name"] = msg.get("phase", phase["name"])
        progress(phase["name"], int(msg.get("samples", 0)), float(msg.get("elapsed_s", 0.0)))

    fin = warm(timeout_s=timeout_s, cancel=cancel, on_line=on_line, stderr_path=str(jd / "stderr.log")) \
        if warm is not None else None
    if fin is None:
        fin = procs.run_child([python or sys.executable, "-m", *module_args], timeout_s=timeout_s, cancel=cancel,
                              on_line=on_line, stderr_path=str(jd / "stderr.log"),
                              env=env if env is not None else procs.child_env())
    return fin, phase["name"]


def failure(jd: Path, fin: procs.Finished, phase: str, killed: str) -> JobError:
    """The error of a runner that left no result: cancelled, timed out or dead."""
    if fin.reason == "cancelled":
        return JobError(phase, "cancelled", f"cancelled; {killed} killed")
    if fin.reason == "timeout":
        return JobError(phase, "timeout", f"no result within the job's time limit during {phase}; {killed} killed")
    stderr = procs.tail(str(jd / "stderr.log"))
    return JobError(phase, "crash", f"runner died ({procs.signal_name(fin.returncode or 0)}) during {phase}"
                    + (f"; stderr: {stderr}" if stderr else ""))


def collect(
    jd: Path,
    fin: procs.Finished,
    base: Mapping[str, Any],
    phase: str,
    details: dict,
    killed: str = "the runner's process group was",
    annotate: Optional[Callable[[dict, list], None]] = None,
) -> DriverResult:
    """A DriverResult from the job folder. `base` holds runtime_name,
    runtime_version, ep and options; `annotate(details, warnings)` adds a
    driver's own warnings once the runner's details are in."""
    res_path = jd / "result.json"
    if fin.reason != "exited" or not res_path.exists():
        return DriverResult(**base, error=failure(jd, fin, phase, killed), details=details,
                            validity=Validity(stop_reason="cancelled" if fin.reason == "cancelled" else "error"))
    raw = json.loads(res_path.read_text())
    details.update(raw.get("details") or {})
    warnings: list[str] = []
    if annotate:
        annotate(details, warnings)
    rt = raw.get("runtime") or {}
    mem, pl, v, e = raw.get("memory"), raw.get("placement"), raw.get("validity") or {}, raw.get("error")
    return DriverResult(
        runtime_name=base["runtime_name"],
        runtime_version=rt.get("version") or base["runtime_version"],
        runtime_build=base.get("runtime_build", ""),
        ep=base["ep"],
        options=base["options"],
        load_ms=raw.get("load_ms"),
        first_run_ms=raw.get("first_run_ms"),
        samples_ms=tuple(raw.get("samples_ms") or ()),
        memory=Memory(**mem) if mem else None,
        placement=Placement(**pl) if pl else None,
        validity=Validity(
            warmup_done=bool(v.get("warmup_done")), min_runs_met=bool(v.get("min_runs_met")),
            min_time_met=bool(v.get("min_time_met")), stop_reason=v.get("stop_reason") or ("error" if e else ""),
            warnings=tuple(list(v.get("warnings") or ()) + warnings),
        ),
        outputs=tuple(arrays.load(jd / "outputs.npz")),
        error=JobError(**e) if e else None,
        details=details,
    )
