"""The devices an agent's drivers reach: enumerated on demand, one scan at a
time (concurrent callers share the scan in progress), and re-scanned for an
unknown device id at most every INVENTORY_RESCAN_S, so a flood of made-up
device ids costs no adb or browser round trips."""

from __future__ import annotations

import threading
import time
from typing import Mapping, Optional

from agents import contract
from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import limits


class Inventory:
    def __init__(self, drivers: Mapping[str, contract.Driver]):
        self.drivers = drivers
        self._devices: dict[str, contract.DeviceInfo] = {}
        self._statuses: list[pb.DriverStatus] = []
        self._scanned_at = 0.0
        self._cond = threading.Condition()
        self._scanning = False

    def scan(self) -> tuple[list[pb.DriverStatus], dict[str, contract.DeviceInfo]]:
        """(each driver's status, every device by "<driver>:<local id>")."""
        with self._cond:
            if self._scanning:
                self._cond.wait_for(lambda: not self._scanning, limits.DESCRIBE_TIMEOUT_S)
                return list(self._statuses), dict(self._devices)
            self._scanning = True
        statuses, found = [], {}
        try:
            for name, drv in self.drivers.items():
                try:
                    ok, why = drv.available()
                    devices = drv.devices() if ok else []
                except Exception as exc:  # a broken driver is reported, not fatal
                    ok, why, devices = False, f"{type(exc).__name__}: {exc}", []
                statuses.append(pb.DriverStatus(name=name, available=ok, reason=why))
                for d in devices:
                    found[f"{name}:{d.local_id}"] = d
        finally:
            with self._cond:
                self._devices, self._statuses = found, statuses
                self._scanned_at = time.monotonic()
                self._scanning = False
                self._cond.notify_all()
        return statuses, found

    def device(self, device_id: str) -> Optional[contract.DeviceInfo]:
        with self._cond:
            d = self._devices.get(device_id)
            fresh = time.monotonic() - self._scanned_at < limits.INVENTORY_RESCAN_S
        if d is None and not fresh:
            d = self.scan()[1].get(device_id)
        return d
