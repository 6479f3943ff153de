"""The one seam between the iOS driver and macOS.

Everything that exists only on a Mac — `sysctl`/`sw_vers`, `xcrun devicectl`,
`xcrun simctl`, and Core ML itself through coremltools (MLModel predict,
MLComputePlan, the remote-device runner app) — is reached through a
`MacBackend`. `MacOSBackend` (agents.ios.macos) is the real one;
`agents.ios.recorded` holds a recorded one that returns what those tools and
APIs return (their exact output shapes), so the driver's logic runs on any
machine.

A backend is named by a small JSON-able spec so that the runner child
process (`agents.ios.runner`) builds the same backend as the agent.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol

import numpy as np


class BackendError(Exception):
    """A macOS tool failed or answered something unreadable."""


class PlanUnavailable(Exception):
    """Core ML gave no compute plan; the message says why."""


class CoreMLSession(Protocol):
    """One model loaded for one compute-unit setting on one device."""

    in_process: bool  # True: Core ML runs inside the runner process (its memory is measurable)

    def load(self) -> dict:
        """Compile and load. Returns {"load_ms", ...} with what was timed and how."""

    def inputs(self) -> list:
        """The model's inputs as harness.kernel.modelfile.TensorSpec values."""

    def predict(self, feed: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        """One prediction; outputs by name (MLModel.predict's dict)."""

    def last_predict_ms(self) -> Optional[float]:
        """Core ML's own duration of the last prediction, when it reports one."""

    def compute_plan(self) -> Any:
        """An MLComputePlan (coremltools' API shape); raises PlanUnavailable."""

    def close(self) -> None:
        ...


class MacBackend(Protocol):
    kind: str

    def spec(self) -> dict: ...

    def check(self) -> tuple[bool, str]: ...

    def sysctl(self) -> str: ...

    def sw_vers(self) -> str: ...

    def hostname(self) -> str: ...

    def devicectl_devices(self) -> dict: ...

    def simctl_booted(self) -> dict: ...

    def remote_support(self) -> tuple[bool, str]: ...

    def coremltools_version(self) -> str: ...

    def devicectl_path(self) -> Optional[str]:
        """devicectl's path (xcrun --find devicectl), None without one."""

    def runner_env(self) -> dict:
        """Environment the runner process needs on top of the agent's."""

    def wake_device(self, identifier: str) -> None:
        """Open a paired phone's devicectl tunnel (idle phones list as disconnected)."""

    def open_session(self, device: Mapping[str, str], model_path: Path, compute_units: str,
                     config: Mapping[str, Any], work_dir: Path, deadline: Optional[float] = None) -> CoreMLSession: ...

    # A remote session's Mac side: the runner app on the device, the model
    # compiled here, and its structure read here (for compute plans).
    def prepare_app(self, device: Mapping[str, str], config: Mapping[str, Any], app_dir: Path, work_dir: Path): ...

    def compile_model(self, package: Path, dest: Path) -> Path: ...

    def model_structure(self, compiled: Path) -> Any: ...


UNAVAILABLE = ("needs macOS with the Xcode command line tools (xcrun devicectl, xcrun simctl) and coremltools "
               "with its native library; this host runs {os}. Run `harness agent serve --drivers ios` on a Mac")


def _run(argv: list[str], timeout_s: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"`{' '.join(argv[:4])}` did not finish within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        err = (done.stderr or done.stdout).strip().splitlines()
        raise BackendError(f"`{' '.join(argv[:4])}` failed (exit {done.returncode}): {err[-1] if err else ''}")
    return done.stdout


def coremltools_dir() -> Optional[Path]:
    spec = importlib.util.find_spec("coremltools")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# What coremltools brings, by release (apple/coremltools tags): the compute
# plan (coremltools/models/compute_plan.py) from 8.1; the remote-device runner
# (models/ml_program/experimental/, the modelrunner app project) and Core ML's
# own load and prediction durations (MLModel.load_duration_in_nano_seconds,
# last_predict_duration_in_nano_seconds) from 8.3.
COREMLTOOLS_PLAN_SINCE = (8, 1)
COREMLTOOLS_REMOTE_SINCE = (8, 3)
# MLComputePlan / MLModelStructure: macOS 14.4, iOS 17.4 (coremlpython/
# CoreMLPython.mm API_AVAILABLE(macos(14.4))); a remote plan's structure is
# read on the Mac (async_wrapper.py retrieve_compute_plan).
PLAN_SINCE = {"macOS": (14, 4), "iOS": (17, 4), "iPadOS": (17, 4)}


def coremltools_gaps(version: str) -> list[str]:
    """What this coremltools release lacks for the driver, one line each."""
    import re

    have = tuple(int(p) for p in re.findall(r"\d+", version or "")[:2])
    if not have:
        return []
    gaps = []
    if have < COREMLTOOLS_PLAN_SINCE:
        gaps.append(f"coremltools {version} has no compute plan (MLComputePlan, coremltools 8.1+): placement is not "
                    "measured")
    if have < COREMLTOOLS_REMOTE_SINCE:
        gaps.append(f"coremltools {version} has no remote-device runner (coremltools 8.3+): phones and simulators "
                    "cannot run models")
    return gaps
