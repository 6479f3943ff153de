"""What a run is asked and what it gives back: plain values, importable
without loading the controller (the CLI and harness.api build a request
before anything heavy is imported; harness.controller.run runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence


@dataclass
class RunRequest:
    cohort: str
    candidates_file: Optional[Path] = None
    models: Sequence[str] = ()
    shapes: Sequence[str] = ()
    dims: Sequence[str] = ()
    eval_set: Optional[Path] = None  # probe inputs (+ labels); default: the candidates file's eval
    lab: Optional[Path] = None
    store: Optional[str] = None
    out: Optional[Path] = None
    probes: int = 8
    drivers: Optional[Sequence[str]] = None  # the local agent's drivers (no lab file)
    resume: Optional[str] = None
    sustained_s: Optional[float] = None  # run each job for exactly this long (windows, throttling)
    repeat: Optional[int] = None  # sessions per job, overriding the policy's `sessions` (docs/running.md)
    cooldown_s: float = 0.0  # pause before each later session of a job


@dataclass
class RunOutcome:
    run_id: str
    report: dict  # the report document without raw samples (`timing.samples_ms` empty; api.report has them)
    out_files: list[Path] = field(default_factory=list)
    interrupted: bool = False

    def budget_failures(self) -> list[str]:
        """One line per failed budget of the report's baseline."""
        from harness.analysis import budget_failures

        return budget_failures(self.report)
