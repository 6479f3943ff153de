"""Finding a Chromium to drive.

Order: the driver's configured `executable`; Playwright's own managed
browsers (`playwright install chromium`, under $PLAYWRIGHT_BROWSERS_PATH or
its default cache folder); then the system's `chromium`, `chromium-browser`,
`google-chrome`. A configured path that does not exist is an error, not a
reason to pick another browser silently.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Inside a Playwright browser folder, by platform (Playwright's registry layout).
_MANAGED = {
    "linux": ("chromium-*/chrome-linux*/chrome", "chromium_headless_shell-*/chrome-linux*/headless_shell"),
    "darwin": ("chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
               "chromium-*/chrome-mac*/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing",
               "chromium_headless_shell-*/chrome-mac*/headless_shell"),
}
FIX = ("install one with `apt-get install chromium` (Debian/Ubuntu) or `playwright install chromium`, "
       "or set `browser: {executable: /path/to/chrome}` in agent.yaml")


@dataclass(frozen=True)
class Found:
    path: Optional[str]
    source: str  # configured | playwright | system | ""
    reason: str = ""  # why none was found, with the fix


def _managed_root() -> Optional[Path]:
    env = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if env and env != "0":
        return Path(env).expanduser()
    if env == "0":
        try:
            import playwright

            return Path(playwright.__file__).parent / "driver" / "package" / ".local-browsers"
        except ImportError:
            return None
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ms-playwright"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ms-playwright"


def _managed() -> Optional[str]:
    root = _managed_root()
    if root is None or not root.is_dir():
        return None
    for pattern in _MANAGED.get("darwin" if sys.platform == "darwin" else "linux", ()):
        # Newest revision first: folder names end with the revision number.
        for cand in sorted(root.glob(pattern), reverse=True):
            if cand.is_file() and os.access(cand, os.X_OK):
                return str(cand)
    return None


def find_chromium(configured: Optional[str] = None) -> Found:
    if configured:
        p = Path(configured).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return Found(str(p), "configured")
        resolved = shutil.which(configured)
        if resolved:
            return Found(resolved, "configured")
        return Found(None, "", f"the configured Chromium executable {configured!r} does not exist or is not "
                               f"executable; {FIX}")
    managed = _managed()
    if managed:
        return Found(managed, "playwright")
    for name in SYSTEM_NAMES:
        path = shutil.which(name)
        if path:
            return Found(path, "system")
    return Found(None, "", f"no Chromium found (looked in Playwright's browsers and for "
                           f"{', '.join(SYSTEM_NAMES)} on PATH); {FIX}")
