"""The controller's configuration files' schemas: device profiles, cohorts,
candidates and lab inventory (the agent file's is agents/agentfile.py).
Unknown keys are errors everywhere."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import ConfigDict, Field, field_validator, model_validator

from harness.kernel import limits
from harness.kernel.configfile import Strict
from harness.kernel.measure.policy import MeasurePolicy


class MeasureConfig(Strict):
    warmup_runs: int = Field(10, ge=0)
    warmup_s: float = Field(1.0, ge=0)
    min_runs: int = Field(100, ge=1)
    min_s: float = Field(5.0, ge=0)
    max_s: float = Field(120.0, gt=0)
    target_ci: float = Field(0.02, ge=0, lt=1)
    max_runs: int = Field(0, ge=0)
    # Independent sessions per job (docs/running.md, "Sessions"): the
    # minimums and max_s are split between them, each warms up on its own.
    sessions: int = Field(5, ge=1, le=limits.MAX_SESSIONS)

    @model_validator(mode="after")
    def _order(self):
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s}) must not be below min_s ({self.min_s})")
        if self.max_runs and self.max_runs < self.min_runs:
            raise ValueError(f"max_runs ({self.max_runs}) must not be below min_runs ({self.min_runs})")
        return self

    def policy(self) -> MeasurePolicy:
        return MeasurePolicy(**self.model_dump())


class Target(Strict):
    runtime: Literal["onnxruntime", "onnxruntime-web", "coreml"]
    version: str = ""
    ep: str = Field(..., min_length=1)
    options: dict[str, Union[str, int, float, bool]] = Field(default_factory=dict)
    measure: Optional[MeasureConfig] = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v):
        # YAML reads 1.20 as a float; a version is text, as it was written.
        if v is None:
            return ""
        return getattr(v, "text", None) or str(v)

    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.runtime}@{self.version or 'any'}/{self.ep}" + (f"[{opts}]" if opts else "")

    def str_options(self) -> dict[str, str]:
        return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in self.options.items()}


class DeviceProfile(Strict):
    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    platform: Literal["linux", "macos", "windows", "android", "ios", "browser"]
    # Selector over the facts an agent reports (glob patterns, case-insensitive);
    # the keys `id`, `driver` and `agent` select on the device itself.
    match: dict[str, str] = Field(default_factory=dict)
    tier: Literal["low", "mid", "high"] = "mid"
    share: float = Field(0.0, ge=0, le=1)
    memory_budget_mb: Optional[float] = Field(None, gt=0)
    targets: list[Target] = Field(..., min_length=1)
    description: str = ""

    @field_validator("match", mode="before")
    @classmethod
    def _match_str(cls, v):
        if isinstance(v, dict):
            return {k: str(x) for k, x in v.items()}
        return v


class Budgets(Strict):
    latency_p90_ms: Optional[float] = Field(None, gt=0)
    # The article's 60-70 % headroom rule: peak memory <= fraction x budget.
    memory_fraction: float = Field(0.65, gt=0, le=1)


class Quality(Strict):
    reference: Optional[str] = None
    max_top1_disagreement: float = Field(0.005, ge=0, le=1)
    min_snr_db: float = 30.0
    max_rel_l2: Optional[float] = Field(None, ge=0)
    consistency_required: bool = False


class Cohort(Strict):
    name: str = Field(..., min_length=1)
    description: str = ""
    devices: list[Union[str, DeviceProfile]] = Field(..., min_length=1)
    budgets: Budgets = Budgets()
    quality: Quality = Quality()
    measure: MeasureConfig = MeasureConfig()


class Candidate(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    onnx: Optional[str] = None
    coreml: Optional[str] = None
    technique: Literal["baseline", "quantisation", "distillation", "pruning", "other"] = "baseline"
    from_: Optional[str] = Field(None, alias="from")
    description: str = ""

    @model_validator(mode="after")
    def _has_artefact(self):
        if not self.onnx and not self.coreml:
            raise ValueError("a candidate needs at least one artefact (onnx: or coreml:)")
        return self


class CandidateSet(Strict):
    reference: Optional[str] = None
    eval: Optional[str] = None
    candidates: dict[str, Candidate] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _refs(self):
        names = set(self.candidates)
        if self.reference and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not a candidate (have: {', '.join(sorted(names))})")
        for name, c in self.candidates.items():
            if c.from_ and c.from_ not in names:
                raise ValueError(f"candidate {name!r}: from {c.from_!r} is not a candidate")
        return self


class TlsClient(Strict):
    ca: str
    cert: Optional[str] = None
    key: Optional[str] = None


class LabAgent(Strict):
    name: str = Field(..., min_length=1)
    address: str = Field(..., pattern=r"^[^\s]+:\d+$")
    token_file: Optional[str] = None
    tls: Optional[TlsClient] = None


class Lab(Strict):
    agents: list[LabAgent] = Field(..., min_length=1)
    # The lab's results store (docs/store.md): a URL such as
    # postgresql://ci@db.lab:5432/harness, or a SQLite path (relative to the
    # lab file). --store and HARNESS_STORE take precedence.
    store: Optional[str] = None

    @model_validator(mode="after")
    def _unique(self):
        seen = set()
        for a in self.agents:
            if a.name in seen:
                raise ValueError(f"agent name {a.name!r} appears twice")
            seen.add(a.name)
        return self
