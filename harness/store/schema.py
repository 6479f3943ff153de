"""The results store's tables: the one schema definition both backends use.

SQLAlchemy Core describes the tables once; the same `Table` objects build the
queries for SQLite and PostgreSQL, and the Alembic revisions under
`migrations/versions/` bring any earlier store to this shape (a test checks
that a store upgraded through every revision matches these tables exactly,
on both backends, with Alembic's own `compare_metadata`).

Types are the portable ones: TEXT for ids and JSON documents (the record is
opaque to the store, see `records.py`), FLOAT seconds since the epoch for
times, and a binary column for raw samples — little-endian float64, 8 bytes
a sample, against ~18 for the same number as JSON text.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, Table, Text

metadata = MetaData()


def _run_fk(table: str) -> ForeignKey:
    return ForeignKey("runs.id", name=f"fk_{table}_run_id_runs")

runs = Table(
    "runs", metadata,
    Column("id", Text, primary_key=True),
    Column("cohort", Text, nullable=False),
    Column("started", Float, nullable=False),
    Column("finished", Float),
    Column("status", Text, nullable=False),
    Column("harness_version", Text, nullable=False),
    Column("config_json", Text, nullable=False),
    # Who started the run, and where (the session that created it; every
    # later resume is a row of run_sessions too).
    Column("user_name", Text),
    Column("host_name", Text),
    Column("git_commit", Text),
    Column("ci_job_url", Text),
    # The controller session working on the run now: a resume elsewhere is
    # refused while the lease is live, so two controllers never run one run.
    Column("lease_owner", Text),
    Column("lease_until", Float),
    Index("ix_runs_started", "started"),
    Index("ix_runs_cohort", "cohort"),
)

run_sessions = Table(
    "run_sessions", metadata,
    Column("run_id", Text, _run_fk("run_sessions"), primary_key=True),
    Column("session", Text, primary_key=True),
    Column("action", Text, nullable=False),  # create | resume
    Column("user_name", Text),
    Column("host_name", Text),
    Column("pid", Integer),
    Column("git_commit", Text),
    Column("ci_job_url", Text),
    Column("harness_version", Text),
    Column("started", Float, nullable=False),
    Column("finished", Float),
)

jobs = Table(
    "jobs", metadata,
    Column("run_id", Text, _run_fk("jobs"), primary_key=True),
    Column("job_key", Text, primary_key=True),
    Column("idx", Integer, nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("state", Text, nullable=False),
)

attempts = Table(
    "attempts", metadata,
    Column("run_id", Text, _run_fk("attempts"), nullable=False),
    Column("job_key", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("agent", Text),
    Column("device_id", Text),
    Column("agent_job_id", Text),
    Column("outcome", Text, nullable=False),
    Column("message", Text),
    Column("at", Float, nullable=False),
    Index("ix_attempts_run", "run_id", "job_key"),
)

results = Table(
    "results", metadata,
    Column("run_id", Text, _run_fk("results"), primary_key=True),
    Column("job_key", Text, primary_key=True),
    Column("record_json", Text, nullable=False),
    Column("samples", LargeBinary),
    Column("outputs", LargeBinary),
    Column("created", Float, nullable=False),
    # Copied out of the record for queries across runs (history, filters);
    # the record stays the source of truth.
    Column("candidate", Text, nullable=False, server_default=""),
    Column("profile", Text, nullable=False, server_default=""),
    Column("target", Text, nullable=False, server_default=""),
    Column("device_id", Text),
    Column("status", Text, nullable=False, server_default=""),  # ok | failed | not_run
    Index("ix_results_series", "candidate", "profile", "target"),
)

blobs = Table(
    "blobs", metadata,
    Column("run_id", Text, _run_fk("blobs"), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# Content-addressed facts, shared by every run (no run id): what the controller
# learnt about a model file and the reference outputs it computed, each under
# a key made only of what determines it, so a later run of the same bytes
# reads them instead of inspecting or running the model again
# (harness/store/content.py).
model_facts = Table(
    "model_facts", metadata,
    Column("digest", Text, primary_key=True),  # sha256 of the artefact as it travels
    Column("format", Text, primary_key=True),
    Column("facts_version", Integer, primary_key=True),  # the inspector's version: a new one recomputes
    Column("facts_json", Text, nullable=False),
    Column("created", Float, nullable=False),
)

reference_outputs = Table(
    "reference_outputs", metadata,
    # sha256 over the model's digest, the packed probe inputs and the runtime
    # (distribution, version, session settings) that computed the outputs.
    Column("key", Text, primary_key=True),
    Column("model_digest", Text, nullable=False),
    Column("outputs", LargeBinary, nullable=False),  # harness.kernel.arrays.pack of the outputs
    Column("meta_json", Text, nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_reference_outputs_model", "model_digest"),
)
