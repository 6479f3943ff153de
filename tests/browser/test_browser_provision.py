"""The browser set-up: which way a Chromium and npm are obtained on which
machine, and one line with the exact command where none may be used."""

import os
import socket
import sys

import pytest

from agents.browser import provision
from agents.browser.provision import Machine

BARE = Machine(chromium=None, npm=None, playwright=True, root=False, sudo=False, manager="apt-get")


def hows(m):
    return [(s.what, s.how) for s in provision.plan(m)]


def test_nothing_to_do_when_both_are_there():
    assert provision.plan(Machine("/usr/bin/chromium", "/usr/bin/npm", True, False, False, "apt-get")) == []


def test_playwright_first_then_the_os_package_when_this_user_may_install():
    root = Machine(None, None, True, True, False, "apt-get")
    assert hows(root) == [("chromium", "playwright"), ("chromium", "package"), ("npm", "package")]
    steps = provision.plan(root)
    assert steps[0].argv == ((sys.executable, "-m", "playwright", "install", "chromium"),)
    assert steps[0].env["PLAYWRIGHT_DOWNLOAD_CONNECTION_TIMEOUT"].isdigit()
    assert steps[1].argv == (("apt-get", "update", "-qq"), ("apt-get", "install", "-y", "-qq", "chromium"))
    assert steps[1].env == {"DEBIAN_FRONTEND": "noninteractive"}
    sudo = provision.plan(Machine(None, "/usr/bin/npm", True, False, True, "dnf"))
    assert [s.argv for s in sudo] == [((sys.executable, "-m", "playwright", "install", "chromium"),),
                                      (("sudo", "-n", "dnf", "install", "-y", "-q", "chromium"),)]


def test_without_root_or_passwordless_sudo_only_the_download_is_tried():
    assert hows(BARE) == [("chromium", "playwright")]
    assert hows(Machine(None, None, False, False, False, None)) == []
    assert provision.manual_command(BARE, "chromium") == "sudo apt-get install -y chromium"
    assert provision.manual_command(Machine(None, None, True, True, False, "pacman"), "npm") == \
        "pacman -S --noconfirm --needed npm"


def _scripted(results):
    """A command runner that records argv and answers from `results`."""
    calls = []

    def run(argv, timeout_s, env):
        calls.append(tuple(argv))
        assert timeout_s > 0
        return results.get(argv[0] if argv[0] != sys.executable else "playwright", 0)

    return run, calls


def test_setup_falls_back_to_the_package_and_reports_what_it_got():
    run, calls = _scripted({"playwright": 1, "apt-get": 0, "/usr/bin/chromium": 0})
    lines = []
    rep = provision.setup(Machine(None, "/usr/bin/npm", True, True, False, "apt-get"), run=run, say=lines.append,
                          find=lambda: "/usr/bin/chromium", which=lambda n: None)
    assert rep.chromium == "/usr/bin/chromium"
    assert calls[0][1:] == ("-m", "playwright", "install", "chromium")
    assert ("apt-get", "install", "-y", "-qq", "chromium") in calls
    assert ("/usr/bin/chromium", "--headless", "--version") in calls  # it must start, not just exist
    assert lines[-2:] == ["browser set-up: chromium: /usr/bin/chromium", "browser set-up: npm: /usr/bin/npm"]


def test_a_chromium_that_does_not_start_is_not_reported_as_ready():
    run, _ = _scripted({"playwright": 0, "/pw/chrome": 127})
    lines = []
    rep = provision.setup(Machine(None, "/usr/bin/npm", True, False, False, "apt-get"), run=run, say=lines.append,
                          find=lambda: "/pw/chrome")
    assert rep.chromium is None
    assert any("does not start" in x for x in lines)
    assert lines[-2] == ("browser set-up: no Chromium on this machine, so the browser rows will not run; "
                         "get it with: sudo apt-get install -y chromium")


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_playwright_download_unreachable_ends_in_one_line_with_the_command(tmp_path, monkeypatch):
    """Real Playwright, pointed at a port nothing listens on: it gives up
    (after its own retries), and the set-up says what to run instead."""
    pytest.importorskip("playwright")
    monkeypatch.setenv("PLAYWRIGHT_DOWNLOAD_HOST", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "browsers"))
    lines = []
    m = Machine(None, "/usr/bin/npm", True, False, False, "apt-get")  # may not install packages
    rep = provision.setup(m, say=lines.append, which=lambda n: None)
    assert rep.chromium is None
    assert "browser set-up: playwright did not provide chromium" in lines
    assert lines[-2].endswith("get it with: sudo apt-get install -y chromium")
    assert not any(p.name.startswith("chromium") for p in (tmp_path / "browsers").glob("*")), \
        "a failed download left a browser folder behind"


def test_probe_reads_this_machine():
    m = provision.probe()
    assert m.root == (os.geteuid() == 0)
    if m.root:
        assert not m.sudo  # not even asked: root needs no sudo
