"""The browser driver's section of agent.yaml (`browser:`).

    browser:
      executable: /usr/bin/chromium          # default: looked for on this machine (locate.py)
      onnxruntime_web: ["1.30.0", "1.22"]    # versions (or prefixes) offered; default: every cached one
      extra_args: []                         # more Chromium flags
      runtime_cache: ~/.cache/harness/ort-web
      device_id: chromium
      work_dir: /var/tmp
      keep_browser: true                     # one Chromium kept between sessions, a fresh page each;
                                             # false: a Chromium started for every session
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator

from harness.kernel.configfile import Strict


class BrowserConfig(Strict):
    executable: Optional[str] = None
    onnxruntime_web: list[str] = Field(default_factory=list)
    extra_args: list[str] = Field(default_factory=list)
    runtime_cache: Optional[str] = None
    device_id: Optional[str] = None
    work_dir: Optional[str] = None
    keep_browser: bool = True

    @field_validator("onnxruntime_web", mode="before")
    @classmethod
    def _versions_as_written(cls, v):
        # YAML reads 1.22 as a float; a version is text, as it was written.
        if isinstance(v, list):
            return [getattr(x, "text", None) or str(x) if isinstance(x, (int, float)) else x for x in v]
        return v
