"""The android driver: phones over adb, measured with onnxruntime_perf_test.

The lab supplies `onnxruntime_perf_test` built for the phones' ABI (one per
ONNX Runtime version, with its shared libraries); the driver pushes it once
per digest under /data/local/tmp/harness/, runs it with the requested EP, and
reads timing, memory and placement from its own output, result file,
profile and log. adbutils is the only extra dependency (`harness[android]`).
"""

from __future__ import annotations

from typing import Any, Mapping

from agents.android.config import AndroidSection as Config
from agents.registry import driver_config


def create(config: Config | Mapping[str, Any]):
    """The driver; `config.parse` checks the section's files and values first."""
    from agents.android.driver import AndroidDriver

    return AndroidDriver(driver_config("android", config).model_dump(exclude_unset=True))
