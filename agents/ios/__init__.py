"""The ios driver: Core ML on a Mac, its connected iPhones and iPads, and its
booted simulators, with per-operation compute-device placement from Core
ML's compute plan; ONNX Runtime (CoreML EP) on the Mac itself.

Agent config (`ios:` in agent.yaml):

    ios:
      development_team: ABCDE12345     # signs coremltools' runner app for phones
      runner_app_dir: ~/.cache/harness/ios-runner   # where the built app is kept
      work_dir: /var/tmp                # job folders
      backend: recorded                 # replay a recorded Mac instead (tests, demos)
      recording: mac-lab.json

Off macOS, `available()` is false and says what is needed.
"""

from __future__ import annotations

from typing import Any, Mapping

from agents.ios.driver import IOSDriver


def create(config: Mapping[str, Any]) -> IOSDriver:
    return IOSDriver(config)
