"""A shared store: who ran each run and where, a lease per run, and the
columns that history queries across runs.

* runs: id NOT NULL (SQLite took NULL ids before); user_name, host_name, git_commit, ci_job_url of the session that
  created the run; lease_owner / lease_until of the session working on it.
* run_sessions: one row per controller session that created or resumed a run.
* results: candidate, profile, target, device_id and status copied out of
  each record (backfilled here from the stored records), indexed for
  `harness history`; foreign keys to runs on every child table.

Revision ID: 0002
Revises: 0001
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 500  # rows backfilled per UPDATE batch: bounded memory on large stores


def _fields(record_json: str) -> dict:
    """The indexed columns of one stored record (as 0.1.0 wrote records)."""
    rec = json.loads(record_json)
    dev = rec.get("device") or {}
    err = rec.get("error")
    if not err:
        status = "ok"
    elif err.get("stage") == "plan" or err.get("kind") == "not_run":
        status = "not_run"
    else:
        status = "failed"
    return {"candidate": str(rec.get("candidate") or ""), "profile": str(dev.get("profile") or ""),
            "target": str(rec.get("target") or ""), "device_id": dev.get("id"), "status": status}


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        # 0.1.0 declared `id TEXT PRIMARY KEY`, which SQLite lets be NULL (its
        # docs, "CREATE TABLE": a long-standing quirk kept for compatibility).
        b.alter_column("id", existing_type=sa.Text, nullable=False)
        for name in ("user_name", "host_name", "git_commit", "ci_job_url", "lease_owner"):
            b.add_column(sa.Column(name, sa.Text))
        b.add_column(sa.Column("lease_until", sa.Float))
        b.create_index("ix_runs_started", ["started"])
        b.create_index("ix_runs_cohort", ["cohort"])
    op.create_table(
        "run_sessions",
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", name="fk_run_sessions_run_id_runs"), primary_key=True),
        sa.Column("session", sa.Text, primary_key=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("user_name", sa.Text),
        sa.Column("host_name", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("git_commit", sa.Text),
        sa.Column("ci_job_url", sa.Text),
        sa.Column("harness_version", sa.Text),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("finished", sa.Float),
    )
    with op.batch_alter_table("attempts") as b:
        b.create_foreign_key("fk_attempts_run_id_runs", "runs", ["run_id"], ["id"])
        b.create_index("ix_attempts_run", ["run_id", "job_key"])
    with op.batch_alter_table("blobs") as b:
        b.create_foreign_key("fk_blobs_run_id_runs", "runs", ["run_id"], ["id"])
    with op.batch_alter_table("results") as b:
        for name in ("candidate", "profile", "target", "status"):
            b.add_column(sa.Column(name, sa.Text, nullable=False, server_default=""))
        b.add_column(sa.Column("device_id", sa.Text))
        b.create_foreign_key("fk_results_run_id_runs", "runs", ["run_id"], ["id"])
        b.create_index("ix_results_series", ["candidate", "profile", "target"])

    conn = op.get_bind()
    results = sa.table("results", sa.column("run_id", sa.Text), sa.column("job_key", sa.Text),
                       sa.column("record_json", sa.Text), sa.column("candidate", sa.Text),
                       sa.column("profile", sa.Text), sa.column("target", sa.Text),
                       sa.column("device_id", sa.Text), sa.column("status", sa.Text))
    update = (results.update()
              .where(results.c.run_id == sa.bindparam("k_run"), results.c.job_key == sa.bindparam("k_job"))
              .values(candidate=sa.bindparam("candidate"), profile=sa.bindparam("profile"),
                      target=sa.bindparam("target"), device_id=sa.bindparam("device_id"),
                      status=sa.bindparam("status")))
    keys = conn.execute(sa.select(results.c.run_id, results.c.job_key).order_by(results.c.run_id,
                                                                                results.c.job_key)).all()
    for start in range(0, len(keys), _BATCH):
        chunk = keys[start:start + _BATCH]
        rows = conn.execute(sa.select(results.c.run_id, results.c.job_key, results.c.record_json).where(
            sa.tuple_(results.c.run_id, results.c.job_key).in_([tuple(k) for k in chunk]))).all()
        conn.execute(update, [{"k_run": r[0], "k_job": r[1], **_fields(r[2])} for r in rows])


def downgrade() -> None:
    with op.batch_alter_table("results") as b:
        b.drop_index("ix_results_series")
        b.drop_constraint("fk_results_run_id_runs", type_="foreignkey")
        for name in ("candidate", "profile", "target", "status", "device_id"):
            b.drop_column(name)
    with op.batch_alter_table("blobs") as b:
        b.drop_constraint("fk_blobs_run_id_runs", type_="foreignkey")
    with op.batch_alter_table("attempts") as b:
        b.drop_index("ix_attempts_run")
        b.drop_constraint("fk_attempts_run_id_runs", type_="foreignkey")
    op.drop_table("run_sessions")
    with op.batch_alter_table("runs") as b:
        b.drop_index("ix_runs_cohort")
        b.drop_index("ix_runs_started")
        for name in ("user_name", "host_name", "git_commit", "ci_job_url", "lease_owner", "lease_until"):
            b.drop_column(name)
