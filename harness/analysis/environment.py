"""The environment a result was measured in, and whether two results may be
compared or pooled.

Must-match fields decide comparability: a different device model, runtime
build, execution provider or CPU frequency governor changes the latency by
itself, so a comparison across them is refused unless forced (and then
marked). Soft fields (load average, temperatures) are shown, not enforced.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

MUST_MATCH = ("platform", "model", "soc", "abi", "os_version", "browser", "cpu_governor", "runtime", "runtime_version",
              "ep", "options")
SOFT = ("loadavg_1m", "thermal_before", "thermal_after", "cpu_mhz")


def fingerprint(record: Mapping[str, Any]) -> dict:
    dev = record.get("device") or {}
    facts = dev.get("facts") or {}
    rt = record.get("runtime") or {}
    details = record.get("details") or {}
    before = (details.get("conditions") or {}).get("before") or {}
    after = (details.get("conditions") or {}).get("after") or {}
    return {
        "platform": dev.get("platform"),
        "model": facts.get("model"),
        "soc": facts.get("soc"),
        "abi": facts.get("abi"),
        "os_version": facts.get("os_version"),
        "browser": facts.get("browser"),
        "cpu_governor": before.get("cpu_governor") or facts.get("cpu_governor"),
        "runtime": rt.get("name"),
        "runtime_version": rt.get("version"),
        "ep": rt.get("ep"),
        "options": dict(sorted((rt.get("options") or {}).items())),
        "loadavg_1m": before.get("loadavg_1m"),
        "cpu_mhz": before.get("cpu_mhz"),
        "thermal_before": before.get("thermal_c") or before.get("thermal"),
        "thermal_after": after.get("thermal_c") or after.get("thermal"),
    }


def mismatches(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """Must-match fields that differ between two fingerprints (unknown on
    either side is not a mismatch: it cannot be checked)."""
    out = []
    for key in MUST_MATCH:
        x, y = a.get(key), b.get(key)
        if x is None or y is None or x == {} or y == {}:
            continue
        if x != y:
            out.append((key, x, y))
    return out


class NotComparable(Exception):
    pass


def check_comparable(a: Mapping[str, Any], b: Mapping[str, Any], what: str, force: bool = False) -> Optional[str]:
    """None when comparable; with force, a marker text; else NotComparable
    naming the field."""
    diff = mismatches(fingerprint(a), fingerprint(b))
    if not diff:
        return None
    text = "; ".join(f"{k}: {x!r} vs {y!r}" for k, x, y in diff)
    if not force:
        raise NotComparable(f"{what}: environments differ in must-match field(s) {text} (use --force to compare anyway)")
    return f"forced across differing {', '.join(k for k, _, _ in diff)}"
