"""Making a machine ready for the browser driver: a Chromium and npm.

`harness browser-runtime setup` (called by `make demo` and `make test`) runs
this. For a missing Chromium it tries, in order:

1. Playwright's own download (`python -m playwright install chromium`), which
   needs cdn.playwright.dev (or the host in $PLAYWRIGHT_DOWNLOAD_HOST). Where
   the name does not resolve it fails within seconds; where a firewall drops
   the packets each of its 5 attempts waits for the socket timeout
   ($PLAYWRIGHT_DOWNLOAD_CONNECTION_TIMEOUT, 30 s by default; playwright-core
   lib/server/registry/browserFetcher.ts), so the set-up lowers that timeout.
2. The operating system's package, when this user may install one: root, or
   a sudo that needs no password (`sudo -n true` exits 0; with a password
   required, `-n` makes sudo "display an error message and exit" instead of
   prompting — sudo(8)).
3. Otherwise one line naming the exact command for this machine; the demo
   goes on with the host alone.

npm (which fetches onnxruntime-web) is obtained the same way, minus step 1.

The decision is a pure function of a probed `Machine`, so every branch is
testable without changing the machine it runs on.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from agents.browser.locate import find_chromium
from harness.kernel import limits, procs

# Per package manager: how to refresh its index, install non-interactively,
# and the packages that provide a Chromium and npm, best first. Ubuntu's
# `chromium-browser` is a snap wrapper (it needs snapd), so Debian's
# `chromium` is tried first.
MANAGERS = {
    "apt-get": {"refresh": ["apt-get", "update", "-qq"], "install": ["apt-get", "install", "-y", "-qq"],
                "chromium": ("chromium", "chromium-browser"), "npm": ("npm",),
                "env": {"DEBIAN_FRONTEND": "noninteractive"}},
    "dnf": {"refresh": None, "install": ["dnf", "install", "-y", "-q"], "chromium": ("chromium",), "npm": ("npm",)},
    "pacman": {"refresh": None, "install": ["pacman", "-S", "--noconfirm", "--needed"], "chromium": ("chromium",),
               "npm": ("npm",)},
    "zypper": {"refresh": None, "install": ["zypper", "--non-interactive", "install"], "chromium": ("chromium",),
               "npm": ("npm",)},
    "apk": {"refresh": None, "install": ["apk", "add", "--no-cache"], "chromium": ("chromium",), "npm": ("npm",)},
}
Runner = Callable[[Sequence[str], float, Optional[dict]], int]


@dataclass(frozen=True)
class Machine:
    """What the set-up may use, probed once (see `probe`)."""
    chromium: Optional[str]  # an executable already found
    npm: Optional[str]
    playwright: bool  # the Python package (and so its download CLI) is importable
    root: bool
    sudo: bool  # passwordless sudo
    manager: Optional[str]  # a key of MANAGERS found on PATH


@dataclass(frozen=True)
class Step:
    what: str  # chromium | npm
    how: str  # playwright | package | none
    argv: tuple[tuple[str, ...], ...] = ()  # commands, run in order
    env: dict = field(default_factory=dict)


def privileged(m: Machine) -> Optional[list[str]]:
    """The prefix that runs a command as root, or None when this user may not."""
    if m.root:
        return []
    if m.sudo:
        return ["sudo", "-n"]
    return None


def package_commands(m: Machine, what: str) -> Optional[list[tuple[str, ...]]]:
    """Install commands for `what` with this machine's package manager, or
    None when there is none or this user may not install packages."""
    prefix = privileged(m)
    if m.manager is None or prefix is None:
        return None
    spec = MANAGERS[m.manager]
    cmds = []
    if spec["refresh"]:
        cmds.append(tuple(prefix + spec["refresh"]))
    cmds.append(tuple(prefix + spec["install"] + [spec[what][0]]))
    return cmds


def manual_command(m: Machine, what: str) -> str:
    """The one command a user runs themselves to get `what`."""
    if m.manager:
        spec = MANAGERS[m.manager]
        sudo = "" if m.root else "sudo "
        return f"{sudo}{' '.join(spec['install'])} {spec[what][0]}".replace(" -qq", "").replace(" -q", "")
    if sys.platform == "darwin":
        return "brew install node" if what == "npm" else f"{sys.executable} -m playwright install chromium"
    return ("install Node.js (it brings npm) from https://nodejs.org" if what == "npm"
            else f"{sys.executable} -m playwright install chromium")


def plan(m: Machine) -> list[Step]:
    """What to try, in order; a step with how == 'none' only tells."""
    steps: list[Step] = []
    if m.chromium is None:
        if m.playwright:
            steps.append(Step("chromium", "playwright", ((sys.executable, "-m", "playwright", "install", "chromium"),),
                              {"PLAYWRIGHT_DOWNLOAD_CONNECTION_TIMEOUT": str(int(limits.PLAYWRIGHT_SOCKET_TIMEOUT_S * 1000))}))
        cmds = package_commands(m, "chromium")
        if cmds:
            steps.append(Step("chromium", "package", tuple(cmds), dict(MANAGERS[m.manager].get("env") or {})))
    if m.npm is None:
        cmds = package_commands(m, "npm")
        if cmds:
            steps.append(Step("npm", "package", tuple(cmds), dict(MANAGERS[m.manager].get("env") or {})))
    return steps


def probe(run: Optional[Runner] = None) -> Machine:
    run = run or run_command
    manager = next((name for name in MANAGERS if shutil.which(name)), None)
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    sudo = False
    if not root and shutil.which("sudo"):
        sudo = run(("sudo", "-n", "true"), limits.SUDO_CHECK_TIMEOUT_S, None) == 0
    try:
        import playwright  # noqa: F401

        has_pw = True
    except ImportError:
        has_pw = False
    return Machine(chromium=find_chromium().path, npm=shutil.which("npm"), playwright=has_pw, root=root, sudo=sudo,
                   manager=manager)


def run_command(argv: Sequence[str], timeout_s: float, env: Optional[dict], say: Callable[[str], None] = print) -> int:
    """Run one set-up command, its output shown indented; -1 when it could not
    start or ran past timeout_s (its whole process group is stopped)."""
    full_env = {**os.environ, **(env or {})}
    try:
        done = procs.run_child(list(argv), timeout_s=timeout_s, cancel=threading.Event(),
                               on_line=lambda line: say(f"    {line}") if line.strip() else None, env=full_env,
                               stderr_path=os.devnull)
    except OSError as exc:
        say(f"    cannot start {argv[0]}: {exc.strerror or exc}")
        return -1
    if done.reason == "timeout":
        say(f"    {argv[0]} stopped after {timeout_s:.0f} s")
        return -1
    return done.returncode if done.returncode is not None else -1


def _launches(path: str, run: Runner) -> bool:
    """A downloaded Chromium may lack the system libraries it links against;
    `--version` loads them all without opening a window."""
    return run((path, "--headless", "--version"), limits.BROWSER_LAUNCH_TIMEOUT_S, None) == 0


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    chromium: Optional[str] = None
    npm: Optional[str] = None


def setup(machine: Optional[Machine] = None, run: Optional[Runner] = None,
          say: Callable[[str], None] = print, find: Callable[[], Optional[str]] = lambda: find_chromium().path,
          which: Callable[[str], Optional[str]] = shutil.which) -> Report:
    """Obtain what is missing; report what the browser driver will use, or
    the one command that gets it."""
    run = run or (lambda argv, t, env: run_command(argv, t, env, say))
    m = machine or probe(run)
    rep = Report(chromium=m.chromium, npm=m.npm)
    for step in plan(m):
        if getattr(rep, step.what):
            continue  # an earlier step got it
        say(f"browser set-up: getting {step.what} via " +
            ("Playwright's download" if step.how == "playwright" else f"{m.manager} (this may take a few minutes)"))
        ok = all(run(argv, limits.SETUP_INSTALL_TIMEOUT_S, step.env) == 0 for argv in step.argv)
        got = (find() if step.what == "chromium" else which("npm")) if ok else None
        if got and step.what == "chromium" and not _launches(got, run):
            say(f"browser set-up: {got} was installed but does not start (missing system libraries?)")
            got = None
        setattr(rep, step.what, got)
        if not got:
            say(f"browser set-up: {step.how} did not provide {step.what}")
    for what in ("chromium", "npm"):
        have = getattr(rep, what)
        if have:
            rep.lines.append(f"browser set-up: {what}: {have}")
        else:
            why = "no Chromium" if what == "chromium" else "no npm (it fetches onnxruntime-web)"
            rep.lines.append(f"browser set-up: {why} on this machine, so the browser rows will not run; "
                             f"get it with: {manual_command(m, what)}")
    for line in rep.lines:
        say(line)
    return rep


def browser_ready(rep: Report) -> bool:
    return bool(rep.chromium and rep.npm)


__all__ = ["Machine", "Step", "plan", "probe", "setup", "manual_command", "package_commands", "browser_ready",
           "MANAGERS", "Report"]
