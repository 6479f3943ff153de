"""Every timeout, size and count limit in one place, each with its reason.

Nothing in harness waits without a bound: RPCs, subprocesses, page waits and
queues all take their limit from here, so an operator can see (and a test can
check) what the worst case is.
"""

MiB = 1024 * 1024

# --- gRPC -------------------------------------------------------------------
# Chunks of 1 MiB keep the agent's memory bounded to a few chunks per upload
# while staying far from gRPC's default 4 MiB message cap.
CHUNK_BYTES = 1 * MiB
# Jobs carry probe inputs and results carry probe outputs; an image model's
# probes run to a few MiB, so allow well above gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * MiB
# Largest model an agent accepts by default; edge models are far smaller, and
# a declared size above this is refused before a byte is written.
MAX_MODEL_BYTES = 4096 * MiB
# Finding out that an address does not answer must be quick: a lab agent on a
# LAN answers a channel connect in milliseconds.
CONNECT_TIMEOUT_S = 5.0
# Describe enumerates devices (adb round trips, a browser launch to probe
# WebGPU), which takes seconds, not minutes.
DESCRIBE_TIMEOUT_S = 60.0
# Cache lookups are a stat per digest.
FIND_MISSING_TIMEOUT_S = 15.0
CANCEL_TIMEOUT_S = 15.0
HEALTH_TIMEOUT_S = 5.0
# Upload deadline: a fixed part plus the size at a pessimistic 10 MB/s.
UPLOAD_BASE_TIMEOUT_S = 30.0
UPLOAD_MIN_RATE_BYTES_S = 10 * 1000 * 1000
# A job's stream deadline is its measurement bound plus this much for model
# load, first run, probes and placement; browsers compile shaders and phones
# push files, so it is generous.
JOB_OVERHEAD_S = 180.0
# Automatic retries apply to UNAVAILABLE only (agent restarting, network blip).
RETRY_ATTEMPTS = 4
RETRY_BASE_DELAY_S = 0.2
RETRY_MAX_DELAY_S = 5.0

# --- agent ------------------------------------------------------------------
# Jobs waiting per device; a controller bug that floods one phone is refused
# rather than queued forever.
MAX_QUEUE_PER_DEVICE = 256
# Finished jobs kept for re-attachment by job id (idempotency window).
FINISHED_JOBS_KEPT = 2000
FINISHED_JOB_TTL_S = 6 * 3600.0
# Worker threads for RPCs; each Run stream holds one while it follows a job.
MAX_CONCURRENT_RPCS = 64
# Grace between SIGTERM and SIGKILL of a runner's process group.
KILL_GRACE_S = 2.0
# How often a waiting Run stream wakes to check its deadline and cancellation.
EVENT_POLL_S = 0.5
# Shutting down: how long in-flight RPCs get before the server stops.
SHUTDOWN_GRACE_S = 5.0

# --- measurement ------------------------------------------------------------
# Probe inputs per job: enough for top-1 agreement to mean something, small
# enough that outputs stay within one message for typical edge models.
MAX_PROBES = 64
# Runner progress lines are throttled to this interval.
PROGRESS_INTERVAL_S = 0.5
# A Run stream may wait in the agent's device queue behind other
# controllers' jobs before its own time limit starts counting.
QUEUE_WAIT_S = 1800.0

# --- quantisation -----------------------------------------------------------
# Calibration batches fed to static quantisation: ONNX Runtime's calibrators
# keep every batch's intermediate outputs in memory before computing ranges,
# and a few hundred representative samples already settle min/max ranges.
CALIBRATION_MAX_BATCHES = 512

# --- analysis ---------------------------------------------------------------
# Reference outputs are computed on the controller's CPU, one child process per
# candidate; an edge model's probes take seconds there, so five minutes only
# ever stops a model that hangs ONNX Runtime.
REFERENCE_TIMEOUT_S = 300.0
# Bootstrap resamples for `harness compare`'s confidence intervals: 2000 keeps
# the 2.5/97.5 % quantiles of the ratio stable to about a percent.
COMPARE_BOOTSTRAP = 2000
# Samples per side fed to the bootstrap and the rank test; a random subset of
# this size bounds the work (the host driver can return 300 000 samples).
COMPARE_MAX_SAMPLES = 4000
