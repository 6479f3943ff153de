"""The result record as typed models: what `report.json` holds, field by field.

One `Report` per run: `run`, one `Result` per device x candidate x runtime
target, and the analysis sections (baseline, decision, ...) as they are.
These models are the contract: `harness/record/schema.json` is generated
from them (`python -m harness.record schema`), `docs/record.md` too
(`python -m harness.record docs`), and every report the harness writes is
checked against them before it is written.

Adding a field: one line in the section it belongs to, with a default (None
for "not measured" or "this release did not record it") and a description,
then regenerate schema.json and docs/record.md (a test says when they are
stale). A field that changes meaning, or is removed, raises SCHEMA_VERSION
and gets an upgrade step in harness/record/load.py.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

# Version 1: the record of harness 0.1.0, with `schema_version` added.
SCHEMA_VERSION = 1

Number = Union[int, float]
Scalar = Union[str, int, float, bool, None]


class Part(BaseModel):
    """A section of the record: every field is declared; an unknown one is an error."""

    model_config = ConfigDict(extra="forbid")


def _f(text: str, default: Any = None, **kw) -> Any:
    """A field with its description (which docs/record.md and schema.json show)."""
    if "default_factory" in kw:
        return Field(description=text, **kw)
    return Field(default, description=text, **kw)


class Run(Part):
    id: str = _f("the run id, e.g. 20261201-204300-d751", ...)
    cohort: str = _f("the cohort's name", ...)
    started: Optional[str] = _f("when the run started (ISO 8601, UTC)")
    finished: Optional[str] = _f("when it finished or was interrupted; null while it runs")
    harness_version: str = _f("the harness release that ran it", ...)
    status: Optional[str] = _f("running | finished | interrupted")


class Device(Part):
    id: Optional[str] = _f("the device's id on its agent (driver:local id); null for a row no device ran")
    agent: Optional[str] = _f("the agent's name in the lab file (`local` for the local agent)")
    profile: str = _f("the device profile this row measures", ...)
    platform: str = _f("linux | macos | windows | android | ios | browser", ...)
    tier: Optional[str] = _f("low | mid | high, from the profile")
    share: Optional[float] = _f("fraction of the user population on this device class, from the profile")
    memory_budget_mb: Optional[float] = _f("the profile's memory budget")
    facts: dict[str, Scalar] = _f("what the agent reports about the device: model, soc, os_version, abi, ram_mb, "
                                  "browser, ... (numbers where the fact is a count)", default_factory=dict)


class ModelFile(Part):
    sha256: str = _f("digest of the artefact as it travels to the agent", ...)
    format: str = _f("onnx | mlpackage.zip | mlmodel", ...)
    size_bytes: int = _f("size of that artefact", ...)
    params: Optional[int] = _f("parameter count (initializer elements)")
    precision: str = _f("fp32 | fp16 | bf16 | int8 | int4 | unknown: the weights' dominant type, int8 when "
                        "quantized operators are present", "unknown")
    op_types: dict[str, int] = _f("operator type -> count in the graph", default_factory=dict)
    model_type: Optional[str] = _f("Core ML: the spec's model type (mlProgram, neuralNetwork, pipeline, ...)")
    spec_version: Optional[int] = _f("Core ML: the specification version the model needs")
    deployment_target: Optional[str] = _f("Core ML: the oldest OS release that runs it (iOS16, macOS13, ...)")


class Runtime(Part):
    name: str = _f("onnxruntime | onnxruntime-web | coreml", ...)
    version: Optional[str] = _f("the runtime's version as it reported it (or the target's, for a row not run)")
    ep: str = _f("execution provider in short names: cpu cuda tensorrt coreml nnapi xnnpack qnn openvino dml "
                 "wasm webgpu webgl webnn; Core ML compute units on the ios driver", ...)
    options: dict[str, str] = _f("the target's options as the runtime received them", default_factory=dict)
    build: Optional[str] = _f("the runtime build that ran (onnxruntime, onnxruntime-openvino, ...): builds of one "
                              "version differ in EPs")


class Session(Part):
    n: int = _f("measured runs of this session: its slice of `timing.samples_ms`, in order", ...)
    load_ms: Optional[float] = _f("this session's session create")
    first_run_ms: Optional[float] = _f("this session's first inference")
    stop_reason: Optional[str] = _f("why this session stopped (the driver's stop rule)")
    warmup_done: bool = _f("this session completed its warm-up", False)
    peak_bytes: Optional[int] = _f("this session's peak memory")
    started_unix: Optional[float] = _f("when the agent started it")
    finished_unix: Optional[float] = _f("when it finished")
    p50_ms: Optional[float] = _f("this session's median")
    p90_ms: Optional[float] = _f("this session's p90")
    mean_ms: Optional[float] = _f("this session's mean")
    min_ms: Optional[float] = _f("this session's fastest run")
    max_ms: Optional[float] = _f("this session's slowest run")
    stable: Optional[bool] = _f("no drift or disturbance inside this session, judged on its own (null: one "
                                "session, judged as the row); the job is unstable only where one moves its headline")
    instability: list[str] = _f("why not", default_factory=list)


class Timing(Part):
    load_ms: Optional[float] = _f("session create (model load and compile)")
    first_run_ms: Optional[float] = _f("the first inference, apart from the measured runs")
    samples_ms: list[float] = _f("every measured run, raw, in order", default_factory=list)
    n: int = _f("number of measured runs", 0)
    p50_ms: Optional[float] = _f("median")
    p90_ms: Optional[float] = _f("90th percentile; null below 36 samples (its 95 % interval needs them)")
    p95_ms: Optional[float] = _f("95th percentile; null below 72 samples")
    p99_ms: Optional[float] = _f("99th percentile; null below 368 samples")
    mean_ms: Optional[float] = _f("mean")
    std_ms: Optional[float] = _f("sample standard deviation")
    min_ms: Optional[float] = _f("fastest run")
    max_ms: Optional[float] = _f("slowest run")
    p90_ci_ms: Optional[list[float]] = _f("95 % distribution-free interval of the p90: [low, high]")
    p99_ci_ms: Optional[list[float]] = _f("95 % interval of the p99")
    p90_bound_ms: Optional[float] = _f("99 % upper bound of the true p90 (MLPerf's early-stopping estimate)")
    p99_bound_ms: Optional[float] = _f("99 % upper bound of the true p99")
    ci_method: Optional[str] = _f("how the intervals and bounds were computed: `hierarchical bootstrap` over "
                                  "several sessions (percentiles then weigh every session the same), `order "
                                  "statistics` for one")
    sessions: list[Session] = _f("every session of the job, in order; `samples_ms` holds their runs one "
                                 "session after the other", default_factory=list)
    between_sessions: Optional[dict[str, Any]] = _f("how much the sessions differ: p50_cv and p90_cv (std of the "
                                                    "log session figures), between/within-session std and share")
    spread: Optional[dict[str, Optional[float]]] = _f("how wide the distribution is: IQR / median, p90 / p50, "
                                                      "p99 / p50, coefficient of variation, stall share (reported, "
                                                      "never a flag)")


class Memory(Part):
    peak_bytes: int = _f("peak footprint while the model ran", ...)
    delta_bytes: int = _f("increase over the footprint before the model loaded", ...)
    method: str = _f("how it was read: VmHWM, wait4 ru_maxrss, perf_test's peak working set, wasm memory + JS "
                     "heap, Core ML report, ...", ...)
    blind_spot: Optional[str] = _f("what the method cannot see (memory held outside the measured process); "
                                   "empty or null when none is known")


class Placement(Part):
    nodes_total: Optional[int] = _f("model nodes: the graph after ONNX Runtime's own optimisations, before an EP "
                                    "fuses them; null where the source cannot tell")
    nodes_by_ep: dict[str, int] = _f("EP -> model nodes it was given", default_factory=dict)
    partitions_by_ep: Optional[dict[str, int]] = _f("EP -> compiled partitions (subgraphs a compiling EP took); "
                                                    "null where the source does not tell them apart")
    cpu_fallback_nodes: Optional[int] = _f("model nodes on the CPU while another EP was requested; null where "
                                           "the source cannot tell", 0)
    fallback_op_types: dict[str, int] = _f("op type -> nodes that fell back to the CPU", default_factory=dict)
    time_share_by_ep: dict[str, float] = _f("EP -> fraction of the run's kernel time (from the profile)",
                                            default_factory=dict)
    fully_accelerated: Optional[bool] = _f("from a strict probe that forbids CPU fallback, where the runtime offers "
                                           "one; null for CPU-class EPs and where no probe ran")
    source: str = _f("where the counts come from: runtime API, the EP's capability summary, the per-node verbose "
                     "log, the profile, the Core ML compute plan", "")


class Parity(Part):
    reference: Optional[str] = _f("the reference candidate compared against")
    reference_on: Optional[str] = _f("where the reference outputs were computed")
    max_abs: Optional[float] = _f("largest absolute difference from the reference's outputs")
    rel_l2: Optional[float] = _f("relative L2 error")
    cosine: Optional[float] = _f("cosine similarity")
    snr_db: Optional[float] = _f("signal-to-noise ratio in dB")
    identical: Optional[bool] = _f("bit-identical outputs")
    top1_agreement: Optional[float] = _f("share of probes whose arg-max class matches (class-score outputs only)")
    samples: Optional[int] = _f("probes compared")
    accuracy: Optional[float] = _f("task accuracy when the eval set has labels")
    tolerance: Optional[dict[str, Any]] = _f("the cohort's quality checks against the reference: {ok, checks}")
    fidelity: Optional[dict[str, Any]] = _f("the same metrics against this candidate's own outputs on the "
                                            "controller's ONNX Runtime CPU EP (does the deployed model compute "
                                            "what its file says?)")
    compared: Optional[dict[str, Any]] = _f("which inputs and outputs were compared")
    notes: list[str] = _f("why a metric is missing", default_factory=list)


class Thermal(Part):
    before: Optional[Union[float, str, dict[str, Any]]] = _f("before the job: a temperature (°C), a thermal "
                                                             "state, or sensor -> °C (phones)")
    after: Optional[Union[float, str, dict[str, Any]]] = _f("after the job, the same way")


class Validity(Part):
    warmup_done: bool = _f("the policy's warm-up was completed", False)
    min_runs_met: bool = _f("at least min_runs were measured", False)
    min_time_met: bool = _f("at least min_s was measured", False)
    stable: bool = _f("false when the figures cannot be trusted (drift, a disturbance, the target interval not "
                      "reached, too few samples; over several sessions a session's drift or disturbance only "
                      "where it moves the job's p50 or p90, else it is a note in warnings)", True)
    instability: list[str] = _f("why not stable, in words; empty when stable", default_factory=list)
    representative: bool = _f("false where the device cannot stand for real hardware (a software WebGPU "
                              "adapter, a simulator): shown, never judged against budgets", True)
    stop_reason: Optional[str] = _f("ci_reached | min_reached | max_s | max_runs | error | cancelled | ...; over "
                                    "several sessions the job's: ci_reached (the hierarchical p90 interval) | "
                                    "sessions_done | max_s | max_sessions")
    thermal: Optional[Thermal] = _f("thermal readings around the job, where the device gives them")
    warnings: list[str] = _f("each reason a figure is doubtful, in words", default_factory=list)


class Error(Part):
    stage: str = _f("plan | schedule | job | load | warmup | measure | probes | placement | runner | ...", ...)
    kind: str = _f("model_invalid | unsupported_op | unsupported_ep | crash | timeout | cancelled | not_run | ...", ...)
    message: str = _f("what happened, in the tool's own words where it gave them", ...)
    cause: Optional[str] = _f("a plan gap's why in a few words (`driver browser unavailable`); the message has "
                              "the whole reason and its fix")


class Measure(Part):
    warmup_runs: int = _f("warm-up runs required", ...)
    warmup_s: float = _f("warm-up seconds required", ...)
    min_runs: int = _f("measured runs required", ...)
    min_s: float = _f("measured seconds required", ...)
    max_s: float = _f("the measurement's time bound", ...)
    target_ci: float = _f("stop when the p90's 95 % half-width is within this fraction of it", ...)
    max_runs: int = _f("cap on measured runs (0: none)", 0)
    sessions: int = _f("sessions the job was measured in at least (`measure.sessions`, `--repeat`); the "
                       "minimums and max_s above are the job's, split between them", 1)
    sustained_s: Optional[float] = _f("`--sustained`: the job ran for exactly this long")
    repeat: Optional[int] = _f("records before sessions: `--repeat`'s session number of this row")


class Ran(Part):
    started_unix: float = _f("when the agent started the job (Unix time)", ...)
    finished_unix: Optional[float] = _f("when it finished")


class Environment(Part):
    platform: Optional[str] = _f("must match to compare")
    model: Optional[Scalar] = _f("device model; must match")
    soc: Optional[Scalar] = _f("must match")
    abi: Optional[Scalar] = _f("must match")
    os_version: Optional[Scalar] = _f("must match")
    browser: Optional[Scalar] = _f("must match")
    cpu_governor: Optional[Scalar] = _f("CPU frequency governor; must match")
    runtime: Optional[str] = _f("must match")
    runtime_version: Optional[str] = _f("must match")
    ep: Optional[str] = _f("must match")
    options: dict[str, str] = _f("must match", default_factory=dict)
    loadavg_1m: Optional[float] = _f("load average at the start (shown, not enforced)")
    cpu_mhz: Optional[float] = _f("CPU frequency at the start (shown)")
    thermal_before: Optional[Union[float, str, dict[str, Any]]] = _f("shown (as validity.thermal)")
    thermal_after: Optional[Union[float, str, dict[str, Any]]] = _f("shown")


class Window(Part):
    start_s: float = _f("window start, seconds into the measurement", ...)
    n: int = _f("runs in the window", ...)
    p50_ms: float = _f("median of the window", ...)
    p90_ms: float = _f("p90 of the window", ...)
    mean_ms: Optional[float] = _f("mean of the window")
    mean_ms: Optional[float] = _f("mean of the window")


class Figure(Part):
    n: int = _f("runs", ...)
    p50_ms: float = _f("median", ...)
    p90_ms: float = _f("p90", ...)


class Sustained(Part):
    duration_s: float = _f("measured seconds", ...)
    window_s: float = _f("window length", ...)
    windows: list[Window] = _f("latency per window", default_factory=list)
    first_minute: Optional[Figure] = _f("the first minute")
    steady_state: Optional[Figure] = _f("after the first minute")
    steady_vs_first: Optional[float] = _f("steady-state p50 / first-minute p50 - 1")
    throttling_onset_s: Optional[float] = _f("first window from which every window is > 10 % slower than the first")


class Result(Part):
    """One device x candidate x runtime target. Failures and gaps are rows too."""

    job: str = _f("job key: profile/candidate/target[#session]", ...)
    device: Device = _f("the device and the profile it was measured as", ...)
    candidate: str = _f("the candidate's name", ...)
    technique: str = _f("baseline | quantisation | distillation | pruning | other", ...)
    model: Optional[ModelFile] = _f("the artefact measured; null for a row no device ran")
    runtime: Runtime = _f("the runtime that ran it (as the agent reported it)", ...)
    target: str = _f("the target's key: runtime@version/ep[options]", ...)
    timing: Optional[Timing] = _f("null when nothing was measured")
    memory: Optional[Memory] = _f("null where the driver cannot read it")
    placement: Optional[Placement] = _f("where the model's nodes ran")
    parity: Optional[Parity] = _f("agreement with the reference on the probe inputs (filled by the analysis)")
    validity: Optional[Validity] = _f("what makes the figures doubtful")
    error: Optional[Error] = _f("null, or why the row has no (or partial) measurements")
    attempts: int = _f("attempts the controller made (a lost agent costs one)", 0)
    measure: Optional[Measure] = _f("the measurement policy the job ran under")
    ran: Optional[Ran] = _f("when the agent ran it")
    details: dict[str, Any] = _f("driver-specific facts about the job (conditions, timeline, runner figures)",
                                 default_factory=dict)
    environment: Optional[Environment] = _f("the fingerprint `harness compare` checks")
    sustained: Optional[Sustained] = _f("`--sustained` runs: latency over time")


class Report(Part):
    """report.json: one run, its rows and the analysis."""

    schema_version: int = _f("the version of this record's shape", SCHEMA_VERSION)
    run: Run = _f("the run: id, cohort, when, which release", ...)
    results: list[Result] = _f("one row per device x candidate x runtime target", default_factory=list)
    baseline: Optional[dict[str, Any]] = _f("cohort baseline per candidate: device rows, median device, lowest "
                                            "tier, per platform, budget checks (docs/decision.md)")
    decision: Optional[dict[str, Any]] = _f("the quantisation-vs-distillation recommendation, its rules and "
                                            "evidence, the student capacity target (docs/decision.md)")
    divergence: Optional[dict[str, Any]] = _f("per candidate: its outputs compared pairwise between targets")
    coverage: Optional[dict[str, Any]] = _f("per candidate: device x runtime version -> ok / fallback / failed / "
                                            "not run")
    operator_support: Optional[dict[str, Any]] = _f("per candidate: op type x runtime/EP -> accelerated / CPU "
                                                    "fallback / unsupported")
    validation: Optional[dict[str, Any]] = _f("per candidate: the three validation points")
    reference: Optional[dict[str, Any]] = _f("where the reference outputs come from, per candidate")
    repeats: Optional[dict[str, Any]] = _f("`--repeat`: between- vs within-session variation per job")
    analysis_errors: Optional[list[str]] = _f("analysis stages that failed, with the reason")
