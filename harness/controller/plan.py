"""The planner: cohort x candidates x runtime targets -> jobs and gaps.

Pure: it takes the agents' inventories as plain values and decides which
devices may run which job. A gap (no device for a profile, no device with the
runtime a target needs, no artefact in the format a runtime loads) is a row
of the result, never a silent omission.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from harness.config.models import DeviceProfile, Target
from harness.measure.policy import MeasurePolicy

# Which artefact formats each runtime loads, best first.
RUNTIME_FORMATS = {
    "onnxruntime": ("onnx",),
    "onnxruntime-web": ("onnx",),
    "coreml": ("mlpackage.zip", "mlmodel"),
}


@dataclass(frozen=True)
class AgentRuntime:
    name: str
    version: str
    eps: tuple[str, ...]
    formats: tuple[str, ...]


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
    repeat: int = 0  # 1..N for `--repeat N` sessions of one job; 0 when not repeated


@dataclass(frozen=True)
class Gap:
    key: str
    profile: DeviceProfile
    candidate: str
    target: Target
    kind: str  # not_covered | device_unavailable | unsupported_target | needs_artefact
    message: str


@dataclass
class Plan:
    jobs: list[PlannedJob] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    matched: dict[str, list[AgentDevice]] = field(default_factory=dict)


def job_key(profile_id: str, candidate: str, target: Target) -> str:
    return f"{profile_id}/{candidate}/{target.key()}"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


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
        if rt.name != target.runtime or target.ep not in rt.eps:
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


def make_plan(
    profiles: Sequence[DeviceProfile],
    candidates: Sequence[str],
    artefacts: Mapping[str, Mapping[str, Artefact]],  # candidate -> format -> artefact
    devices: Sequence[AgentDevice],
    measure: MeasurePolicy,
) -> Plan:
    plan = Plan()
    index = 0
    for prof in profiles:
        matching = [d for d in devices if device_matches(prof, d)]
        plan.matched[prof.id] = matching
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
                                         f"(platform {prof.platform}, match {crit})"))
                    continue
                if not usable:
                    states = ", ".join(f"{d.id}: {d.state}{' (' + d.state_reason + ')' if d.state_reason else ''}"
                                       for d in matching)
                    plan.gaps.append(Gap(key, prof, cand, target, "device_unavailable",
                                         f"every device matching {prof.id} is unavailable ({states})"))
                    continue
                if not runners:
                    have = sorted({f"{r.name} {r.version} [{' '.join(r.eps)}]" for d in usable for r in d.runtimes})
                    plan.gaps.append(Gap(key, prof, cand, target, "unsupported_target",
                                         f"no device matching {prof.id} offers {target.key()} (they offer: {'; '.join(have) or 'nothing'})"))
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
                                         f"candidate {cand} has no artefact for {target.runtime}: needs {need}"))
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


def repeated(plan: Plan, times: int) -> Plan:
    """Each job as `times` independent sessions, keyed `<job key>#<i>`, kept
    next to each other so one device runs them in turn."""
    from dataclasses import replace

    if times <= 1:
        return plan
    jobs = []
    for j in plan.jobs:
        for r in range(1, times + 1):
            jobs.append(replace(j, key=f"{j.key}#{r}", index=len(jobs), repeat=r))
    gaps = [replace(g, key=f"{g.key}#{r}") for g in plan.gaps for r in range(1, times + 1)]
    return Plan(jobs=jobs, gaps=gaps, matched=plan.matched)
