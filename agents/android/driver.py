"""AndroidDriver: phones reached through an adb server, measured with
onnxruntime_perf_test.

Devices are whatever the adb server lists, in any state: a phone that is
`offline`, `unauthorized` or gone since the last scan is reported as such with
a hint, never dropped and never an exception. Facts come from `getprop` and
/proc/meminfo and are cached per serial (they do not change while a phone is
plugged in); a phone in use by a job is not probed again, so a Describe never
disturbs a measurement. The agent's job table runs one job per device at a
time; the driver keeps no per-job state of its own, only caches behind a lock.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Optional

from agents.android import config as config_mod
from agents.android import facts as facts_mod
from agents.android import perftest, releases
from agents.android.adb import Adb, AdbUnavailable, DeviceLost
from agents.android.config import NNAPI_MIN_SDK, AndroidConfig
from agents.android.job import AndroidJob, Shared
from agents.contract import DeviceInfo, DriverResult, JobError, JobSpec, ProgressFn, RuntimeSpec, Validity
from harness.kernel import limits

log = logging.getLogger("harness.agent.android")

# adb's device states (adb's transport.cpp) -> ours, with what fixes them.
_STATE_HINTS = {
    "offline": ("offline", "adb lists the phone as offline: reconnect its USB cable (or `adb connect` again), "
                           "and keep the screen unlocked while it reconnects"),
    "unauthorized": ("unauthorized", "USB debugging is not authorised for this host: unlock the phone and tap "
                                     "'Allow' on the RSA key prompt (check 'Always allow from this computer')"),
    "authorizing": ("unauthorized", "adb is still authorising this host; accept the prompt on the phone"),
    "connecting": ("offline", "adb is still connecting to the phone"),
    "no permissions": ("offline", "the adb server may not open this USB device: add a udev rule for it "
                                  "(see Android's 'Run apps on a hardware device' guide)"),
    "recovery": ("offline", "the phone is in recovery mode; reboot it into Android"),
    "bootloader": ("offline", "the phone is in the bootloader; reboot it into Android"),
    "sideload": ("offline", "the phone is in sideload mode; reboot it into Android"),
}
GONE_HINT = "adb does not list this phone any more: check its USB cable, or its Wi-Fi and `adb connect`"


class AndroidDriver:
    name = "android"

    def __init__(self, config: Mapping[str, Any]):
        self.cfg: AndroidConfig = config_mod.parse(config)
        self.adb = Adb(self.cfg.adb_host, self.cfg.adb_port, self.cfg.adb_path)
        self._lock = threading.Lock()
        self._facts: dict[str, dict[str, str]] = {}
        self._seen: dict[str, dict[str, str]] = {}  # serial -> last facts, to report a vanished phone
        self._busy: set[str] = set()
        self._shared = Shared()

    # -- inventory ----------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        try:
            import adbutils  # noqa: F401
        except Exception as exc:
            return False, f"adbutils cannot be imported ({exc}); install it with `pip install 'harness[android]'`"
        try:
            self.adb.ensure_server()
        except AdbUnavailable as exc:
            return False, str(exc)
        if not self.cfg.runners:
            return True, ("no onnxruntime_perf_test runner configured (android.runners in agent.yaml): phones are "
                          "listed but offer no runtime")
        return True, ""

    def devices(self) -> list[DeviceInfo]:
        try:
            self.adb.ensure_server()
        except AdbUnavailable as exc:
            log.warning("android: %s", exc)
            return []
        listed = self._list()
        # adb keeps reconnecting a TCP phone it already knows (it shows as
        # offline meanwhile); only the ones it has dropped are connected
        # again, all at once, so dead addresses cost one timeout, not many.
        missing = [a for a in self.cfg.connect if a not in {item[0] for item in listed}]
        if missing:
            with ThreadPoolExecutor(max_workers=min(8, len(missing)), thread_name_prefix="adb-connect") as pool:
                for address, outcome in zip(missing, pool.map(self._connect, missing)):
                    log.info("android: adb connect %s: %s", address, outcome)
            listed = self._list()
        # USB serials before host:port ones, so a phone on both is used over USB.
        listed = sorted(listed, key=lambda x: (":" in x[0], x[0]))
        present = {item[0] for item in listed}
        out: list[DeviceInfo] = []
        if listed:
            # Phones answer independently: a slow one must not hold up the rest.
            with ThreadPoolExecutor(max_workers=min(8, len(listed)), thread_name_prefix="adb-describe") as pool:
                out = list(pool.map(lambda item: self._describe(*item), listed))
        with self._lock:
            vanished = [(s, f) for s, f in self._seen.items() if s not in present]
        for serial, known in vanished:
            out.append(DeviceInfo(serial, "android", known, self._runtimes(known), "offline", GONE_HINT))
        return _one_entry_per_phone(out)

    def _list(self) -> list[tuple[str, str, str]]:
        try:
            return self.adb.list()
        except Exception as exc:
            log.warning("android: cannot list phones: %s", exc)
            return []

    def _connect(self, address: str) -> str:
        try:
            return self.adb.connect(address)
        except Exception as exc:  # an unreachable phone is a state, not an error
            return f"{type(exc).__name__}: {exc}"

    def _describe(self, serial: str, adb_state: str, detail: str = "") -> DeviceInfo:
        with self._lock:
            known = self._facts.get(serial) or self._seen.get(serial) or {"adb_serial": serial}
            busy = known.get("serial", serial) in self._busy
        if adb_state != "device":
            state, hint = state_for(adb_state, detail)
            return DeviceInfo(serial, "android", known, self._runtimes(known), state, hint)
        phone = self.adb.phone(serial)
        try:
            if serial not in self._facts:
                r = phone.sh("getprop; echo @@meminfo@@; cat /proc/meminfo", timeout_s=limits.ADB_INVENTORY_TIMEOUT_S)
                props_text, _, meminfo = r.stdout.partition("@@meminfo@@")
                found = facts_mod.device_facts(facts_mod.parse_getprop(props_text), meminfo, serial)
                with self._lock:
                    self._facts[serial] = self._seen[serial] = found
            facts = self._facts[serial]
            if busy:
                return DeviceInfo(serial, "android", facts, self._runtimes(facts), "ready", "")
            thermal = facts_mod.parse_thermalservice(
                phone.sh("dumpsys thermalservice 2>/dev/null", timeout_s=limits.ADB_INVENTORY_TIMEOUT_S).stdout)
        except DeviceLost as exc:
            return DeviceInfo(serial, "android", known, self._runtimes(known), "offline", f"{exc}")
        except Exception as exc:
            return DeviceInfo(serial, "android", known, self._runtimes(known), "offline",
                              f"the phone does not answer shell commands: {type(exc).__name__}: {exc}")
        status = thermal.get("status")
        facts = self._with_limits(facts)
        if status is not None and status >= facts_mod.TOO_HOT_STATUS:
            return DeviceInfo(serial, "android", facts, self._runtimes(facts), "too_hot",
                              f"thermal status {thermal['status_name']}: let the phone cool down")
        return DeviceInfo(serial, "android", facts, self._runtimes(facts), "ready", "")

    def _with_limits(self, facts: Mapping[str, str]) -> dict[str, str]:
        """The phone's facts with what each runner it can run cannot measure,
        so `harness devices` shows it before a job asks (agents.android.releases)."""
        parts = []
        for spec in self._runtimes(facts):
            runner = self.cfg.runners[spec.version]
            gaps = releases.limits_of(runner.version, runner.eps)
            if gaps:
                parts.append(f"onnxruntime {runner.version}: " + "; ".join(gaps))
        out = dict(facts)
        if parts:
            out["limits"] = " | ".join(parts)
        return out

    def _runtimes(self, facts: Mapping[str, str]) -> tuple[RuntimeSpec, ...]:
        abilist = [a for a in (facts.get("abilist") or facts.get("abi") or "").split(",") if a]
        if not abilist:
            return ()  # never described (unauthorized from the start): its ABI is unknown
        sdk = int(facts["sdk"]) if str(facts.get("sdk", "")).isdigit() else None
        out = []
        for version, runner in sorted(self.cfg.runners.items()):
            if abilist and runner.abi not in abilist:
                continue
            eps = tuple(e for e in runner.eps if not (e == "nnapi" and sdk is not None and sdk < NNAPI_MIN_SDK)
                        and releases.ep_too_old(e, runner.version) is None)
            out.append(RuntimeSpec("onnxruntime", version, eps, ("onnx",)))
        return tuple(out)

    def close(self) -> None:
        pass  # the adb server is shared with the lab's other tools: it stays up

    # -- jobs -----------------------------------------------------------------------------
    def run(self, job: JobSpec, progress: ProgressFn, cancel) -> DriverResult:
        target = job.target
        base = dict(runtime_name="onnxruntime", runtime_version=target.version, ep=target.ep,
                    options=dict(target.options))
        runner = self._runner_for(target.version)
        error = None
        if target.runtime != "onnxruntime":
            error = JobError("job", "unsupported_target",
                             f"the android driver runs onnxruntime, not {target.runtime!r}")
        elif runner is None:
            have = ", ".join(sorted(self.cfg.runners)) or "none"
            error = JobError("job", "unsupported_version",
                             f"no onnxruntime_perf_test configured for ONNX Runtime {target.version or '(any)'} "
                             f"(configured: {have})")
        elif target.ep not in runner.eps:
            error = JobError("job", "unsupported_ep", f"the {runner.version} runner was built with "
                                                      f"{', '.join(runner.eps)}, not {target.ep!r}")
        else:
            # What the runner's release takes is checked before the phone is
            # touched: a clear result, not perf_test's usage text.
            try:
                too_old = releases.ep_too_old(target.ep, runner.version)
                if too_old is not None:
                    raise too_old
                plan = releases.plan_options(target.ep, target.options, runner.version)
                if "cpu_affinity" in target.options:
                    perftest.cores_mask(target.options["cpu_affinity"])
            except releases.TooOld as exc:
                error = JobError("job", "runner_too_old", str(exc))
            except releases.BadOption as exc:
                error = JobError("job", "bad_option", str(exc))
        if error is not None:
            return DriverResult(**base, error=error, validity=Validity(stop_reason="error"))
        serial = job.device_local_id
        with self._lock:
            # One phone may be listed under two serials (USB and TCP): the
            # hardware serial is what must never run two jobs.
            phone_id = (self._facts.get(serial) or {}).get("serial", serial)
            if phone_id in self._busy:
                # The agent's job table never does this; refuse rather than overlap.
                return DriverResult(**base, error=JobError("job", "device_busy", f"{serial} is running a job"),
                                    validity=Validity(stop_reason="error"))
            self._busy.add(phone_id)
        try:
            return AndroidJob(self.adb.phone(serial), self.cfg, runner, job, progress, cancel, self._shared,
                              plan).run()
        finally:
            with self._lock:
                self._busy.discard(phone_id)

    def _runner_for(self, version: str) -> Optional[config_mod.Runner]:
        runners = self.cfg.runners
        if not version:
            return runners[max(runners, key=_vkey)] if runners else None
        if version in runners:
            return runners[version]
        matching = [v for v in runners if v.startswith(version + ".")]
        return runners[max(matching, key=_vkey)] if matching else None


def state_for(adb_state: str, detail: str = "") -> tuple[str, str]:
    """Our state and a hint for an adb state other than `device`. adbutils'
    own list() reports a no-permission phone as "no" (it splits on spaces);
    Adb.list() keeps the whole state and its reason (adb.parse_devices)."""
    if adb_state in ("no", "no permissions"):
        state, hint = _STATE_HINTS["no permissions"]
        return state, f"{hint} (adb: {detail})" if detail else hint
    return _STATE_HINTS.get(adb_state, ("offline", f"adb reports the phone as {adb_state!r}"))


def _one_entry_per_phone(devices: list[DeviceInfo]) -> list[DeviceInfo]:
    """A phone on USB and on adb over TCP at once is one phone: the second
    entry is kept (so it is visible) but offered as offline."""
    first: dict[str, str] = {}
    out = []
    for d in devices:
        hw = d.facts.get("serial")
        if hw and d.state == "ready" and hw in first:
            d = DeviceInfo(d.local_id, d.platform, d.facts, d.runtimes, "offline",
                           f"the same phone as {first[hw]} (hardware serial {hw}), which is used instead")
        elif hw and d.state == "ready":
            first[hw] = d.local_id
        out.append(d)
    return out


def _vkey(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in v.split("."))
