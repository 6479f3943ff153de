"""The host driver's section of agent.yaml (`host:`).

    host:
      device_id: bench-01        # the device's id on this agent (default: the host name)
      work_dir: /var/tmp         # where job folders are made (default: the system temp folder)
      runtimes_dir: /opt/ort     # ONNX Runtime environments made by `harness runtime install`
                                 # (default: $HARNESS_CACHE/ort-python, else ~/.cache/harness/ort-python)
      warm_runners: true         # fork each session's runner from a warm template per environment
                                 # (agents/host/warm.py; Linux); false spawns a fresh interpreter each time
"""

from __future__ import annotations

from typing import Optional

from harness.kernel.configfile import Strict


class HostConfig(Strict):
    device_id: Optional[str] = None
    work_dir: Optional[str] = None
    runtimes_dir: Optional[str] = None
    warm_runners: bool = True
