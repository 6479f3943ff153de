"""The planner: cohort x candidates x runtime targets -> jobs and gaps.

Pure: it takes the agents' inventories as plain values and decides which
devices may run which job. A gap (no device for a profile, no device with the
runtime a target needs, no artefact in the format a runtime loads) is a row
of the result, never a silent omission.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from harness.config.schema import DeviceProfile, Target
from harness.kernel.formats import RUNTIME_FORMATS
from harness.kernel.measure.policy import MeasurePolicy



@dataclass(frozen=True)
class AgentRuntime:
    name: str
    version: str
    eps: tuple[str, ...]
    formats: tuple[str, ...]
    build: str = ""  # a host runtime's distribution: onnxruntime, onnxruntime-openvino ...

    @property
    def label(self) -> str:
        return f"{self.build or self.name} {self.version} [{' '.join(self.eps)}]"


@dataclass(frozen=True)
class AgentDevice:
    agent: str
    id: str
    driver: str
    platform: str
    facts: Mapping[str, str]
    runtimes: tuple[AgentRuntime, ...]
    state: str = "ready"
    state_reason: str = ""

    @property
    def key(self) -> str:
        return f"{self.agent}/{self.id}"


@dataclass(frozen=True)
class Artefact:
    candidate: str
    format: str
    digest: str
    path: str
    size_bytes: int


@dataclass(frozen=True)
class PlannedJob:
    key: str
    index: int
    profile: DeviceProfile
    candidate: str
    target: Target
    artefact: Artefact
    measure: MeasurePolicy
    eligible: tuple[str, ...]  # AgentDevice.key values
    # Exactly measure.sessions sessions (`--repeat N`, `compare --ab`): no
    # more while the interval is wide, so interleaved candidates stay paired.
    fixed_sessions: bool = False


@dataclass(frozen=True)
class Gap:
    key: str
    profile: DeviceProfile
    candidate: str
    target: Target
    kind: str  # not_covered | device_unavailable | unsupported_target | needs_artefact
    message: str
    cause: str = ""  # the short why, for table cells ("driver browser unavailable")


@dataclass
class Plan:
    jobs: list[PlannedJob] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    matched: dict[str, list[AgentDevice]] = field(default_factory=dict)


def job_key(profile_id: str, candidate: str, target: Target) -> str:
    return f"{profile_id}/{candidate}/{target.key()}"


def device_matches(profile: DeviceProfile, dev: AgentDevice) -> bool:
    if dev.platform != profile.platform:
        return False
    for key, pattern in profile.match.items():
        if key == "id":
            value = dev.id
        elif key == "driver":
            value = dev.driver
        elif key == "agent":
            value = dev.agent
        else:
            value = dev.facts.get(key)
        if value is None or not fnmatch.fnmatchcase(str(value).lower(), pattern.lower()):
            return False
    return True


def runtime_for(target: Target, dev: AgentDevice) -> Optional[AgentRuntime]:
    best = None
    for rt in dev.runtimes:
        # A target names the runtime (onnxruntime) or one build of it (onnxruntime-openvino).
        if target.runtime not in (rt.name, rt.build) or target.ep not in rt.eps:
            continue
        if target.version and not _version_matches(rt.version, target.version):
            continue
        if best is None or _vkey(rt.version) > _vkey(best.version):
            best = rt
    return best


def _version_matches(have: str, want: str) -> bool:
    return have == want or have.startswith(want + ".")


def _vkey(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in v.replace("-", ".").split("."))


# Which drivers reach which platforms: a driver that cannot run has no
# devices to tell its platform, so a profile no device matches is explained by
# the status of the drivers that would serve it. A profile that names its
# driver (`match: {driver: ...}`) is explained by that one; a platform not
# listed here by every driver that is unavailable.
PLATFORM_DRIVERS = {"browser": ("browser",), "android": ("android",), "ios": ("ios",),
                    "macos": ("host", "ios"), "linux": ("host",), "windows": ("host",)}
DriverStatuses = Mapping[str, Sequence[tuple[str, bool, str]]]  # agent -> (driver, available, reason)


def uncovered(profile: DeviceProfile, drivers: DriverStatuses) -> tuple[str, str]:
    """(cause, explanation) for a profile no device matches: the status of
    the drivers that would serve it, with the reason (and fix) each agent
    reports."""
    wanted = (profile.match["driver"],) if profile.match.get("driver") else PLATFORM_DRIVERS.get(profile.platform, ())
    statuses = [(agent, name, ok, why) for agent, ds in drivers.items() for name, ok, why in ds]
    down = [s for s in statuses if not s[2] and (s[1] in wanted or not wanted)]
    if not down and not wanted:
        down = [s for s in statuses if not s[2]]
    if down:
        names = sorted({s[1] for s in down})
        return (f"driver {', '.join(names)} unavailable",
                "; ".join(f"driver {name} on agent {agent} is unavailable: {why or 'no reason given'}"
                          for agent, name, _, why in down))
    loaded = {s[1] for s in statuses}
    if wanted and drivers and not loaded & set(wanted):
        have = "; ".join(f"{agent}: {', '.join(n for n, _, _ in ds) or 'none'}" for agent, ds in drivers.items())
        return (f"no agent runs driver {' or '.join(wanted)}",
                f"no agent loads the {' or '.join(wanted)} driver (drivers per agent: {have}); start an agent with "
                f"`harness agent serve --drivers {wanted[0]}`, or give `--drivers` for the embedded one")
    up = sorted({s[1] for s in statuses if s[2] and (s[1] in wanted or not wanted)})
    return ("no matching device", f"driver {', '.join(up)} is available, but none of its devices match" if up else "")


def make_plan(
    profiles: Sequence[DeviceProfile],
    candidates: Sequence[str],
    artefacts: Mapping[str, Mapping[str, Artefact]],  # candidate -> format -> artefact
    devices: Sequence[AgentDevice],
    measure: MeasurePolicy,
    drivers: Optional[DriverStatuses] = None,
) -> Plan:
    plan = Plan()
    index = 0
    for prof in profiles:
        matching = [d for d in devices if device_matches(prof, d)]
        plan.matched[prof.id] = matching
        cause, why = uncovered(prof, drivers or {}) if not matching else ("", "")
        usable = [d for d in matching if d.state in ("ready", "busy")]
        for target in prof.targets:
            runners = [d for d in usable if runtime_for(target, d) is not None]
            policy = target.measure.policy() if target.measure else measure
            for cand in candidates:
                key = job_key(prof.id, cand, target)
                if not matching:
                    crit = ", ".join(f"{k}={v}" for k, v in prof.match.items()) or "any"
                    plan.gaps.append(Gap(key, prof, cand, target, "not_covered",
                                         f"no device on any agent matches profile {prof.id} "
                                         f"(platform {prof.platform}, match {crit})" + (f": {why}" if why else ""),
                                         cause))
                    continue
                if not usable:
                    states = ", ".join(f"{d.id}: {d.state}{' (' + d.state_reason + ')' if d.state_reason else ''}"
                                       for d in matching)
                    plan.gaps.append(Gap(key, prof, cand, target, "device_unavailable",
                                         f"every device matching {prof.id} is unavailable ({states})",
                                         "device " + " or ".join(sorted({d.state for d in matching}))))
                    continue
                if not runners:
                    have = sorted({r.label for d in usable for r in d.runtimes})
                    plan.gaps.append(Gap(key, prof, cand, target, "unsupported_target",
                                         f"no device matching {prof.id} offers {target.key()} (they offer: {'; '.join(have) or 'nothing'})",
                                         f"no {target.runtime} {target.ep} on its devices"))
                    continue
                art = None
                for fmt in RUNTIME_FORMATS.get(target.runtime, ()):
                    art = artefacts.get(cand, {}).get(fmt)
                    if art:
                        break
                if art is None:
                    need = "a Core ML artefact (coreml: in the candidates file)" if target.runtime == "coreml" \
                        else "an ONNX artefact (onnx: in the candidates file)"
                    plan.gaps.append(Gap(key, prof, cand, target, "needs_artefact",
                                         f"candidate {cand} has no artefact for {target.runtime}: needs {need}",
                                         f"no {'Core ML' if target.runtime == 'coreml' else 'ONNX'} artefact"))
                    continue
                plan.jobs.append(PlannedJob(key, index, prof, cand, target, art, policy,
                                            tuple(d.key for d in runners)))
                index += 1
    return plan


def with_policy(plan: Plan, policy_for) -> Plan:
    """The same plan with each job's policy passed through policy_for."""
    from dataclasses import replace

    return Plan(jobs=[replace(j, measure=policy_for(j.measure)) for j in plan.jobs], gaps=plan.gaps,
                matched=plan.matched)
