"""The test phone against the real adb server: the handshake, both shell
protocols, the sync service, authorisation and unplugging, as adb itself and
adbutils see them."""

import os
import time

import pytest
from adbutils import AdbDevice
from adbutils.errors import AdbError

import phone as phone_mod


def wait_for_state(client, serial, state, within_s=15.0):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        states = {d.serial: d.state for d in client.list()}
        if states.get(serial) == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"{serial} never became {state!r}: {client.list()}")


def test_handshake_banner_is_what_adb_lists(phones, adb_client):
    p = phones.make()
    [info] = [d for d in adb_client.list(extended=True) if d.serial == p.serial]
    assert info.state == "device"
    assert info.tags["model"] == "Pixel_7" and info.tags["device"] == "panther"  # adb replaces spaces
    dev = AdbDevice(adb_client, serial=p.serial)
    assert set(dev.get_features().split(",")) >= {"shell_v2", "stat_v2"}


def test_shell_protocols_keep_output_stderr_and_exit_status(phones, adb_client):
    p = phones.make()
    dev = AdbDevice(adb_client, serial=p.serial)
    assert dev.shell("getprop ro.product.model") == "Pixel 7"  # shell v1: raw bytes
    r = dev.shell2("echo out; echo err >&2; exit 7", v2=True)
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    big = dev.shell2("head -c 300000 /dev/zero | tr '\\0' a", v2=True)  # many WRTEs, each acknowledged
    assert big.returncode == 0 and big.stdout == "a" * 300000
    # Device paths live in the sandbox and read back as device paths.
    r = dev.shell2("cd /data/local/tmp && pwd && cat /proc/meminfo | head -1", v2=True)
    assert r.stdout.splitlines() == ["/data/local/tmp", "MemTotal:       7833248 kB"]
    assert [s.exit_code for s in p.sessions_matching("exit 7")] == [7]


def test_sync_push_pull_stat_list(phones, adb_client, tmp_path):
    p = phones.make()
    dev = AdbDevice(adb_client, serial=p.serial)
    blob = os.urandom(1_500_000)  # > 64 KiB sync chunks and > the negotiated payload
    dev.sync.push(blob, "/data/local/tmp/new/dir/blob.bin", mode=0o755)  # parents made, as adbd does
    assert (p.root / "data/local/tmp/new/dir/blob.bin").read_bytes() == blob
    info = dev.sync.stat("/data/local/tmp/new/dir/blob.bin")
    assert info.size == len(blob) and info.mode & 0o777 == 0o755
    assert dev.sync.stat("/data/local/tmp/missing").mode == 0
    assert dev.sync.read_bytes("/data/local/tmp/new/dir/blob.bin") == blob
    out = tmp_path / "pulled.bin"
    assert dev.sync.pull_file("/data/local/tmp/new/dir/blob.bin", out) == len(blob) and out.read_bytes() == blob
    assert [f.path for f in dev.sync.list("/data/local/tmp/new/dir")] == [".", "..", "blob.bin"]
    with pytest.raises(AdbError, match="No such file"):
        dev.sync.read_bytes("/data/local/tmp/missing")


def test_unknown_service_is_refused(phones, adb_client):
    p = phones.make()
    dev = AdbDevice(adb_client, serial=p.serial)
    c = dev.open_transport()
    try:
        c.send_command("jdwp:1234")
        with pytest.raises(AdbError):
            c.check_okay()
    finally:
        c.close()


def test_unauthorized_phone_is_listed_as_such(phones, adb_client):
    p = phones.make(auth_required=True, connect=False)
    adb_client.connect(p.serial, timeout=10)
    wait_for_state(adb_client, p.serial, "unauthorized")


def test_unplugged_phone_goes_offline(phones, adb_client):
    p = phones.make()
    dev = AdbDevice(adb_client, serial=p.serial)
    assert dev.shell2("echo hi", v2=True).stdout == "hi\n"
    p.unplug()
    wait_for_state(adb_client, p.serial, "offline")
    with pytest.raises(AdbError, match="offline"):
        dev.shell2("echo hi", v2=True)


def test_phone_state_is_what_its_tools_print(phones, adb_client):
    p = phones.make(props=phone_mod.GALAXY_A14, temperature_c=44.0, battery_level=15)
    dev = AdbDevice(adb_client, serial=p.serial)
    battery = dev.shell2("dumpsys battery", v2=True).stdout
    assert "  level: 15\n" in battery and "  temperature: 440\n" in battery
    p.state.set_temperature(39.5, status=1)
    thermal = dev.shell2("dumpsys thermalservice", v2=True).stdout
    assert "Thermal Status: 1" in thermal and "mValue=39.5, mType=3, mName=skin" in thermal
    assert dev.shell2("cat /sys/class/thermal/thermal_zone0/temp", v2=True).stdout == "39500\n"
    assert dev.shell2("getprop ro.product.model", v2=True).stdout == "SM-A145F\n"


def test_the_adb_command_line_pushes_pulls_and_runs(phones, adb_port, tmp_path):
    """adb's own client uses the v2 forms the phone advertises (stat_v2)."""
    import subprocess

    from adbutils._utils import adb_path

    p = phones.make()
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(200_000))

    def adb(*args):
        return subprocess.run([adb_path(), "-P", str(adb_port), "-s", p.serial, *args], capture_output=True,
                              text=True, timeout=60)

    assert adb("shell", "mkdir -p /data/local/tmp/cli").returncode == 0
    push = adb("push", str(src), "/data/local/tmp/cli/")  # a folder: STA2 says so, the name is appended
    assert push.returncode == 0, push.stderr
    assert (p.root / "data/local/tmp/cli/data.bin").read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    pull = adb("pull", "/data/local/tmp/cli/data.bin", str(back))
    assert pull.returncode == 0, pull.stderr
    assert back.read_bytes() == src.read_bytes()
    sh = adb("shell", "echo $((6*7)); exit 3")
    assert (sh.returncode, sh.stdout) == (3, "42\n")
