"""The ios driver's section of agent.yaml (`ios:`).

    ios:
      development_team: ABCDE12345     # signs coremltools' runner app for phones
      provisioning_profile_uuid: ...   # optional, for the runner app
      bundle_identifier: ...           # the runner app's, a team's own (phones need it and the team)
      runner_app_dir: ~/.cache/harness/ios-runner   # where the built app is kept
      work_dir: /var/tmp                # job folders
      backend: recorded                 # replay a recorded Mac instead (tests, demos)
      recording: mac-lab.json
      host: {device_id: mac-mini}       # the Mac's own ONNX Runtime (the host driver's keys)
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import model_validator

from agents.host.config import HostConfig
from harness.kernel.configfile import Strict


class IOSConfig(Strict):
    development_team: str = ""
    provisioning_profile_uuid: Optional[str] = None
    bundle_identifier: Optional[str] = None
    runner_app_dir: Optional[str] = None
    work_dir: Optional[str] = None
    backend: Literal["macos", "recorded"] = "macos"
    recording: Optional[str] = None
    host: HostConfig = HostConfig()

    @model_validator(mode="after")
    def _recording(self):
        if self.backend == "recorded" and not self.recording:
            raise ValueError("backend recorded needs recording: FILE")
        return self
