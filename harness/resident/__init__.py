"""A resident `harness` process: what lets a repeat `harness run` start in
milliseconds instead of seconds.

A fresh `harness run` spends most of its fixed cost before it measures
anything: the interpreter imports the controller (SQLAlchemy, pydantic,
numpy, gRPC: about a second of CPU, several on a loaded machine), then the
local agent starts in the same process, imports its drivers, starts the host
driver's warm-runner template and learns each model's placement. A resident
keeps both warm for the next run:

* **the resident** (serve.py): one process per user and per *key*: the
  harness version, the interpreter and its flags, `sys.path`, a fingerprint
  of the harness and agents sources (each file's size and mtime) and of the
  directories on `sys.path`, and the whole environment except what a shell
  changes between two commands (PWD, OLDPWD, SHLVL, _). It imports the
  controller once and then forks one process per `harness run` (child.py):
  a fresh process in every way a run can see — the caller's argv, working
  directory, environment, umask and stdin/stdout/stderr (passed over the
  socket), its own process group, signals forwarded from the caller — that
  simply finds its modules imported. Nothing of one run reaches the next:
  each run's process exits.
* **its kept local agents**: the agent a run without a lab file uses, in a
  process of its own (agents are servers with threads; a process that forks
  runs must have none), one per driver set, on a unix socket. It is the
  embedded agent's configuration, kept: the host driver's template stays up
  and its cached placements carry over, so a repeat job skips the placement
  pass. Two runs at once share it like two controllers share a lab agent:
  the agent runs one job per device at a time and queues the other.

Only this user can reach either: both sockets live in a directory of mode
0700 that this user owns (refused, and the run done in-process, when it is
anything else), the sockets are 0600, and the resident checks each caller's
uid (SO_PEERCRED) before reading a byte. The directory is
$HARNESS_KEEP_AGENT_DIR, else $XDG_RUNTIME_DIR/harness, else
$TMPDIR/harness-UID (/tmp when TMPDIR is unset).

A resident with no run for `limits.RESIDENT_IDLE_S` (HARNESS_KEEP_AGENT_IDLE_S
overrides it) stops its agents and exits. `harness run --no-keep-agent`, or
HARNESS_KEEP_AGENT=0, runs everything in the calling process as before, as
does any run where a resident cannot be reached or started (the fallback is
silent: the run is the same, only slower). `harness agent kept` lists this
user's residents and `--stop` ends them. Linux only (SO_PEERCRED).
"""

from __future__ import annotations

# The opt-out (0, false, no, off), the socket directory, and the idle time.
OPT_OUT_ENV = "HARNESS_KEEP_AGENT"
DIR_ENV = "HARNESS_KEEP_AGENT_DIR"
IDLE_ENV = "HARNESS_KEEP_AGENT_IDLE_S"
