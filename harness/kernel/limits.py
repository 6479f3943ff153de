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
# While another controller uploads the same model, poll for it this often.
UPLOAD_WAIT_POLL_S = 0.2
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
# Grace between SIGTERM and SIGKILL of a runner's process group.
KILL_GRACE_S = 2.0
# How often a waiting Run stream wakes to check its deadline and cancellation.
EVENT_POLL_S = 0.5
# Shutting down: how long in-flight RPCs get before the server stops.
SHUTDOWN_GRACE_S = 5.0

# --- agent: warm runners (agents/host/warm.py) -------------------------------
# Fork-server templates held at once (one per runtime environment in use);
# each holds an interpreter with numpy and ONNX Runtime imported (~50-150 MB).
FORK_SERVERS = 4
# A template that keeps dying is given up (runners are spawned instead) after
# this many ends within the window: a broken environment must not loop.
FORK_SERVER_RESTARTS = 5
FORK_SERVER_RESTART_WINDOW_S = 600.0
# Backoff between restarts of a template that died again, at most this.
FORK_SERVER_BACKOFF_CAP_S = 10.0
# A template imports ONNX Runtime (an OpenVINO build imports its plugins);
# a busy host can take tens of seconds; past this, a job spawns its runner.
FORK_SERVER_START_TIMEOUT_S = 60.0
# Describing the host waits this long for its template to say which runtime
# it imported; past it, the agent imports the runtime itself to tell.
FORK_SERVER_INVENTORY_WAIT_S = 15.0
# One fork-server message: a job folder path or a child's exit status.
FORK_SERVER_MESSAGE_BYTES = 64 * 1024
# Placements (with their strict probe) kept per (model digest, build,
# options) on an agent, so a later session or a repeat job skips the pass.
PLACEMENT_CACHE_ENTRIES = 512

# Results (and attempts) the controller's writer puts in one transaction: a
# lab of hundreds of devices shares commits; a controller killed mid-run loses
# only what was queued, which a resume gets back from the agents.
RESULT_BATCH_MAX = 256

# Results whose raw samples a report holds at once while it streams them into
# report.json (1,000 samples are 8 KB as float64): memory stays flat in the
# number of results.
REPORT_BATCH = 500
# Rows the HTML report's latency plot draws (a box each); the tables and
# report.json have every row, and a taller plot fits no screen.
REPORT_PLOT_ROWS = 500

# A device's next session is queued on its agent behind the one it runs
# (harness/controller/scheduler.py, take_ahead), so it starts without a
# controller round trip: only behind a session bounded by this (next to a
# long one a round trip is nothing, and a queued job stays far inside the
# agent's QUEUE_WAIT_S) ...
AHEAD_MAX_BEHIND_S = 300.0
# ... only for a job whose probes are this small (what it holds on the agent
# while it waits) ...
AHEAD_MAX_PROBE_BYTES = 1 * MiB
# ... and only on agents with at most this many devices, so one controller's
# streams stay within half the agent's Run-stream limit, its queued jobs far
# inside MAX_QUEUED_JOBS and its probes ahead within a third of
# MAX_LIVE_PROBE_BYTES (MAX_RUN_STREAMS is below, with the agent's limits).
AHEAD_MAX_AGENT_DEVICES = 80

# --- controller faults ------------------------------------------------------
# Attempts per job across devices when agents are lost mid-job.
MAX_JOB_ATTEMPTS = 3
# How long a controller waits for a lost agent to come back before giving
# its jobs to other devices only (or ending them as error rows).
AGENT_RETURN_WAIT_S = 60.0
# Client pings on every channel: a dead or frozen agent is detected within
# KEEPALIVE_S + KEEPALIVE_TIMEOUT_S even while a long job streams nothing.
KEEPALIVE_S = 20.0
KEEPALIVE_TIMEOUT_S = 10.0
# The shortest ping interval an agent accepts from a controller.
MIN_PING_INTERVAL_S = 1.0

# --- measurement ------------------------------------------------------------
# Probe inputs per job: enough for top-1 agreement to mean something, small
# enough that outputs stay within one message for typical edge models.
MAX_PROBES = 64
# Probe inputs of one job, and the outputs of one result, stay under this so
# a job and its result each fit one gRPC message with room to spare (an
# image model's probes at 1x3x1024x1024 are 12 MiB each).
MAX_PROBE_BYTES = 24 * MiB
MAX_OUTPUT_BYTES = 24 * MiB
# Runner progress lines are throttled to this interval.
PROGRESS_INTERVAL_S = 0.5
# A Run stream may wait in the agent's device queue behind other
# controllers' jobs before its own time limit starts counting.
QUEUE_WAIT_S = 1800.0

# --- agent: what a client may ask -------------------------------------------
# Each RPC class has its own concurrency limit, so a flood of one kind never
# starves another (Health, Describe and Cancel answer while every upload and
# run slot is taken). Every admitted call holds one server thread.
# A controller uploads one model at a time, at network speed: eight
# controllers at once fill a lab link, and each stream may hold one message
# of up to RUN_MESSAGE_BYTES while gRPC reads it.
MAX_UPLOAD_STREAMS = 8
# A Run stream holds a thread while it follows its job: room for a full
# agent-wide queue plus running and re-attached streams, so a flood of jobs
# meets the queue limit (MAX_QUEUED_JOBS), not this one.
MAX_RUN_STREAMS = 320
# Describe and FindMissingModels answer from memory or one shared device
# scan; every controller calls them when it connects.
MAX_CONTROL_RPCS = 32
# Cancel answers from memory in microseconds.
MAX_CANCEL_RPCS = 8
# Health checks answer from memory; Watch streams hold a thread each.
MAX_HEALTH_CHECKS = 8
MAX_HEALTH_WATCHES = 8
# Methods outside those classes (none today).
MAX_OTHER_RPCS = 4
# Server threads beyond the class limits, so a refusal is answered at once.
RPC_HEADROOM = 16
# Control requests carry a job id or a list of digests, nothing large.
CONTROL_MESSAGE_BYTES = 128 * 1024
# Digests per FindMissingModels call: a run's models, with room; fits the
# control message limit (each digest is 66 bytes on the wire).
MAX_FIND_DIGESTS = 1024
# An upload message is one chunk of data and its header.
UPLOAD_MESSAGE_BYTES = CHUNK_BYTES + 4096
# A Run request: the probe limit plus the rest of the job (options, labels,
# tensor names). It is also the agent's receive limit for every method,
# enforced by gRPC itself from a message's length prefix.
RUN_MESSAGE_BYTES = MAX_PROBE_BYTES + 1 * MiB
# A unary request's one message must arrive within this.
REQUEST_RECEIVE_S = 30.0
# How often the watchdog ends calls past their server-side deadline.
WATCHDOG_TICK_S = 0.5
# A Run stream lives at most queue wait + the job's timeout_s + this grace
# (for the result to reach the client); then the agent ends it.
RUN_STREAM_GRACE_S = 60.0
# An upload moves at least this many bytes per second, counted over windows
# of UPLOAD_FLOOR_WINDOW_S: a stalled or trickling stream is ended (its
# committed bytes kept for a resume). 64 KiB/s is far below any lab link.
UPLOAD_FLOOR_BYTES_S = 64 * 1024
UPLOAD_FLOOR_WINDOW_S = 30.0
# A partial upload nobody resumes is removed after this long without a write.
PARTIAL_UPLOAD_TTL_S = 6 * 3600.0
# The model cache's default quota (models, partial uploads and uploads in
# progress); past it the least recently used models no live job needs go.
CACHE_QUOTA_BYTES = 32 * 1024 * MiB
# The cache never takes the last of its disk: this much stays free.
DISK_FREE_RESERVE_BYTES = 1024 * MiB
# Jobs queued across all devices of an agent.
MAX_QUEUED_JOBS = 256
# Probe bytes held by queued and running jobs together: a queue of 256 jobs
# with 24 MiB probes each would otherwise take 6 GiB.
MAX_LIVE_PROBE_BYTES = 256 * MiB
# Finished results kept for re-attachment, by serialized size (results carry
# probe outputs of up to MAX_OUTPUT_BYTES each).
FINISHED_RESULTS_BYTES = 256 * MiB
# Events a job keeps for a re-attached stream to replay (the latest ones).
MAX_EVENTS_KEPT = 256
# An unknown device id re-scans the inventory at most this often.
INVENTORY_RESCAN_S = 2.0
# How often queued jobs past QUEUE_WAIT_S and stale partial uploads are swept.
JANITOR_INTERVAL_S = 1.0
# A job's whole time limit, and any one measurement duration: half a day
# covers sustained and thermal runs; a NaN or infinite value is refused.
MAX_JOB_TIMEOUT_S = 12 * 3600.0
MAX_MEASURE_S = 12 * 3600.0
# Run counts (warm-up, minimum, cap): a million samples is 8 MB of results.
MAX_RUNS = 1_000_000
# Artefacts per job (one today; multi-file formats fit in a few).
MAX_MODELS_PER_JOB = 8
# Free labels per job, for logs.
MAX_LABELS = 32
# Tensors per probe: decoders with a key/value cache take two per layer.
MAX_PROBE_TENSORS = 512
# Dimensions per tensor; ONNX models in the field use at most 6 or so.
MAX_TENSOR_RANK = 16
# Target options per job, and the length of a key and of a value.
MAX_OPTIONS = 64
MAX_OPTION_KEY_CHARS = 128
MAX_OPTION_VALUE_CHARS = 256
# Thread-count options (intra/inter-op threads, EP thread pools).
MAX_THREADS = 256
# Buffers above this are mmapped and go back to the system when freed (the
# agent fixes glibc's otherwise self-raising threshold; see agents.heap).
# Above an upload chunk and its framing, so a deploy's chunk buffers are
# reused from the heap: at 1 MiB every chunk was a fresh mapping, faulted in
# and zeroed, half the agent's CPU in a 200 MB deploy (250 against 320 MB/s).
MALLOC_MMAP_THRESHOLD_BYTES = 4 * MiB
# Free memory at the top of a heap beyond this goes back to the system: a
# few chunks' worth, so one deploy's buffers stay mapped between chunks (at
# glibc's 128 KiB every freed chunk was trimmed and faulted in again).
MALLOC_TRIM_THRESHOLD_BYTES = 8 * MiB
# An idle agent whose resident memory grew this much since its last trim
# gives the free memory inside its heaps back (agents.heap): a burst of
# large or refused requests otherwise leaves 100+ MiB free but held.
HEAP_TRIM_GROWTH_BYTES = 16 * MiB

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
# Hierarchical-bootstrap resamples per side for `harness compare`'s intervals:
# 1000 settles the ratio's 2.5/97.5 % arms to a few percent of their width
# (each resample costs O(sessions x SESSION_GRID), whatever the run counts).
COMPARE_BOOTSTRAP = 1000
# Stored records a noise floor learns from per device target: the newest
# 2000 are years of nightly runs on one target and a few MB of JSON.
NOISE_MAX_RECORDS = 2000
# Run-to-run steps of unchanged models a noise floor needs before it is their
# 95th percentile: with fewer, that percentile is the largest step seen or
# less, and the floor falls back to the sessions' spread.
NOISE_MIN_RUN_STEPS = 10
# The pairs' deviations a noise book keeps per device target, size class and
# metric for the robust between-pairs spread: the most recent, a few hundred
# interleaved runs' worth (8 bytes each in a Python list of floats: ~1 MB).
NOISE_MAX_PAIR_DEVS = 20000
# `harness compare --ab`: sessions of each model. Measured here (bench/compare.py,
# a 0.015 ms model 30 % slower, load 5-15 on 2 cores): a session now and then
# lands in a slow machine state and makes its pair an outlier; 10 pairs found
# the slowdown in 55 of 60 resampled sets, 16 pairs in 59 of 60.
AB_PAIRS = 16

# --- sessions ---------------------------------------------------------------
# Most sessions one job runs while its p90's interval is wider than target_ci:
# pyperf's default worker count; beyond it the time goes to other jobs.
MAX_SESSIONS = 20
# Runs a session is reduced to for the hierarchical bootstrap: 256 quantiles
# place the p90 and p99 within 0.4 % of the session's rank scale.
SESSION_GRID = 256
# Resamples behind a record's interval and the stop rule between sessions:
# 400 settles the 2.5/97.5 % arms to a few percent of their width in ~10 ms.
SESSION_BOOTSTRAP = 400

# --- browser ----------------------------------------------------------------
# Starting Chromium and connecting Playwright over CDP takes about a second on
# an idle machine; a loaded 2-core CI box has been seen at several seconds.
BROWSER_LAUNCH_TIMEOUT_S = 30.0
# A kept browser's keeper process: Python, Playwright's driver (a Node.js
# process), then the launch above; Playwright alone has taken 4 s on a
# loaded 2-core box.
BROWSER_KEEPER_START_TIMEOUT_S = 60.0
# Kept browsers per agent (one per Chromium build and launch flags; every EP
# runs under the same flags today, so one is in use): each idle one holds a
# browser, its GPU and network processes, Playwright's Node.js driver and the
# keeper (about 0.5 GB proportional set size idle, measured on Chromium 156).
BROWSERS_KEPT = 2
# A probe waits this long for a kept browser busy with a session, then
# starts a browser of its own rather than hold up Describe.
BROWSER_KEEPER_BUSY_WAIT_S = 2.0
# Describe probes the browser once (launch, WebGPU adapter, WebGL, WebNN) in
# a child process; past this the device is reported offline with the reason.
# Below DESCRIBE_TIMEOUT_S so the first Describe still answers in time.
BROWSER_PROBE_TIMEOUT_S = 40.0
# The page measures in batches of about this long between stop-rule checks:
# long enough that the Python<->page round trip is a small share of the wall
# time, short enough that max_s and progress stay responsive.
BROWSER_BATCH_S = 0.25
# Runs in one batch at most, whatever the model's speed (bounds the sample
# array one evaluate call returns).
BROWSER_BATCH_MAX_RUNS = 2000
# `npm pack onnxruntime-web@VERSION` downloads about 35 MB; slow links need
# minutes, a dead registry must not hang the CLI.
NPM_TIMEOUT_S = 600.0
# Resolving a version range with `npm view` is one small registry request.
NPM_VIEW_TIMEOUT_S = 60.0
# `harness runtime install`: `python -m venv` copies pip's bundled wheel (seconds).
RUNTIME_VENV_TIMEOUT_S = 120.0
# pip downloads an ONNX Runtime build and numpy: 20-80 MB for the CPU and
# OpenVINO wheels, several hundred for onnxruntime-gpu on a slow link.
RUNTIME_INSTALL_TIMEOUT_S = 1800.0
# Importing onnxruntime in the new environment to list its providers.
RUNTIME_PROBE_TIMEOUT_S = 120.0
# A failed browser probe is retried after this long rather than on every
# Describe, so a broken Chromium does not cost a launch per RPC.
BROWSER_PROBE_RETRY_S = 30.0
# --- browser set-up (`harness browser-runtime setup`) -----------------------
# `sudo -n true` answers from sudo's policy at once; a hung PAM must not
# stall the set-up.
SUDO_CHECK_TIMEOUT_S = 15.0
# One install command (Playwright's ~170 MB Chromium download, an apt-get
# update + install): minutes on a slow link; a dead mirror must not hang make.
SETUP_INSTALL_TIMEOUT_S = 900.0
# Playwright's download socket timeout (its default is 30 s per attempt, 5
# attempts): an unreachable CDN then costs under a minute, not two and a half.
PLAYWRIGHT_SOCKET_TIMEOUT_S = 10.0
# --- ios --------------------------------------------------------------------
# sysctl, sw_vers and `simctl list` answer from local state in well under a
# second; a hung CoreSimulator service must not stall Describe.
MAC_TOOL_TIMEOUT_S = 15.0
# `devicectl list devices` waits for network-attached devices up to its own
# --timeout; this is that value (the call's bound adds a margin to it).
DEVICECTL_LIST_TIMEOUT_S = 10.0
# Installing and launching the runner app on a simulator (`simctl install`,
# `simctl launch`, `simctl get_app_container`) copies a small app bundle.
SIMCTL_APP_TIMEOUT_S = 120.0
# Building coremltools' runner app with xcodebuild the first time on a
# machine takes minutes; later builds reuse the product.
RUNNER_APP_BUILD_TIMEOUT_S = 900.0
# `devicectl device info details` opens an idle phone's tunnel: over USB in
# a second or two, over Wi-Fi up to devicectl's own --timeout (this value).
DEVICECTL_WAKE_TIMEOUT_S = 20.0
# coremltools' runner app is polled every half second (its own interval,
# remote_device.py _DeviceCtlRemoteService); the answer is waited for until
# the job's own deadline, not coremltools' 20 attempts.
REMOTE_POLL_S = 0.5
# A runner stops waiting on a device this long before the driver's job limit,
# so it can still close the device's session and write what it measured.
RUNNER_RESULT_MARGIN_S = 10.0

# --- android driver ---------------------------------------------------------
# A phone on adb answers each read or write of a transfer within seconds even
# over Wi-Fi; a minute of silence means it is gone.
ADB_IO_TIMEOUT_S = 60.0
# `adb start-server` forks the daemon and returns once it listens: seconds.
ADB_START_TIMEOUT_S = 30.0
# `adb connect HOST:PORT` to a phone on the LAN: a handshake, or refused.
ADB_CONNECT_TIMEOUT_S = 10.0
# Short shell commands (getprop, dumpsys, mkdir, logcat -d) finish in well
# under a second; dumpsys on a loaded phone can take a few.
ADB_SHELL_TIMEOUT_S = 30.0
# How often a waiting shell read wakes to check cancellation and deadlines.
ADB_POLL_S = 0.2
# Kept of a command's stdout/stderr (the tail): summaries and errors are small.
ADB_OUTPUT_BYTES = 8 * MiB
# Removing a job's folder on the phone (a model link, test data, a profile).
ANDROID_CLEANUP_TIMEOUT_S = 60.0
# perf_test processes per job: each batch is sized to what the stop rule
# still needs, so a handful suffice; the cap stops a runaway loop.
ANDROID_MAX_BATCHES = 20
# Largest profile pulled back for placement: a few runs of a big model's
# per-node events; past this ONNX Runtime has stopped recording anyway.
ANDROID_PROFILE_MAX_BYTES = 256 * MiB
# What a job needs after its measurement (placement pass, probe runs,
# cleanup); a cooldown wait is cut short so that this much is left.
ANDROID_AFTER_MEASURE_S = 60.0
# A phone's answers during Describe (getprop, dumpsys thermalservice): one
# that takes longer is reported offline rather than stall every other phone's
# listing (DESCRIBE_TIMEOUT_S covers the whole scan).
ADB_INVENTORY_TIMEOUT_S = 10.0

# --- results store ----------------------------------------------------------
# A SQLite writer waits this long for another process's transaction (each is milliseconds).
STORE_SQLITE_BUSY_TIMEOUT_S = 30.0
# Connections a controller keeps: its scheduler threads write attempts and results at once.
STORE_POOL_SIZE = 5
# Short bursts above the pool (a dashboard's parallel page loads).
STORE_POOL_OVERFLOW = 5
# Waiting for a free pooled connection; longer means a leak, not load.
STORE_POOL_TIMEOUT_S = 30.0
# An unreachable PostgreSQL server fails the command instead of hanging it.
STORE_PG_CONNECT_TIMEOUT_S = 10.0
# The largest statement is one bulk COPY of a run's results.
STORE_PG_STATEMENT_TIMEOUT_S = 120.0
# Row locks are held for one result's insert; longer means a stuck session.
STORE_PG_LOCK_TIMEOUT_S = 30.0
# A crashed client's open transaction stops holding locks after this.
STORE_PG_IDLE_IN_TRANSACTION_S = 300.0
# A migration rewrites whole tables (backfill, SQLite batch copies).
STORE_MIGRATE_STATEMENT_TIMEOUT_S = 3600.0
# A run's lease: its controller renews it every quarter; a dead one frees the run after this.
RUN_LEASE_S = 120.0
# Fresh run ids tried when one is taken (two controllers starting in the same second).
RUN_ID_ATTEMPTS = 5
# From this many results at once PostgreSQL writes through COPY; below, one INSERT each is cheaper.
STORE_COPY_MIN_ROWS = 16
# Runs one listing returns (the dashboard pages through more).
STORE_MAX_LIST = 1000
# Runs one history series reads: 500 runs x 1,000 samples is ~4 MB of samples, 5,000 is ~40 MB.
HISTORY_MAX_RUNS = 5000

# --- dashboard (`harness serve`) ---------------------------------------------
# A lab's team with a few tabs each; beyond that uvicorn answers 503.
DASHBOARD_MAX_CONNECTIONS = 64
# Idle keep-alive connections are closed after this.
DASHBOARD_KEEP_ALIVE_S = 5
# In-flight page renders get this long on Ctrl-C.
DASHBOARD_SHUTDOWN_S = 10
# Runs a page of the run list shows.
DASHBOARD_PAGE_RUNS = 50

# --- resident harness process and kept local agents (harness/resident/) ------
# A resident with no run for this long stops its kept agents and exits: long
# enough for the next run of an edit-and-run loop or a CI job's next step,
# short enough that an idle machine soon gets its memory back (~150 MB for the
# resident, as much again for an agent and its warm-runner template).
RESIDENT_IDLE_S = 600.0
# A new resident imports the controller before it answers: about a second on
# an idle machine, several on a loaded 2-core box; past this the caller runs
# in-process instead.
RESIDENT_START_S = 60.0
# A kept agent imports its drivers and listens (the host driver's template
# warms up after, in the background); past this the run starts its own agent.
RESIDENT_AGENT_START_S = 60.0
# A caller writes its request as soon as it connects; one that does not is
# dropped, so a stuck caller cannot hold up the resident's other callers.
RESIDENT_REQUEST_S = 5.0
# An agent asked to stop gets this long to drain before it is killed.
RESIDENT_AGENT_STOP_S = 10.0
# argv, an environment and a working directory are a few KiB.
RESIDENT_MESSAGE_BYTES = 4 * MiB
# The files of a key no resident holds (its lock free), untouched this long,
# are removed by the next resident to start: every edit of the sources makes
# a new key, so they would pile up.
RESIDENT_STALE_S = 86400.0
# Residents alive per user at once (a new key each edit of the sources or
# change of environment): a new one stops the longest-idle beyond this.
RESIDENTS_KEPT = 3
