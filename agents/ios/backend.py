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

    def open_session(self, device: Mapping[str, str], model_path: Path, compute_units: str,
                     config: Mapping[str, Any], work_dir: Path) -> CoreMLSession: ...


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
