"""The store as harness 0.1.0 wrote it (before the schema was versioned).

A store made by that release has these tables and no `alembic_version`;
`harness store migrate` stamps it with this revision and upgrades from here.
A new store is built by running every revision from this one.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("cohort", sa.Text, nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("finished", sa.Float),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("harness_version", sa.Text, nullable=False),
        sa.Column("config_json", sa.Text, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", name="fk_jobs_run_id_runs"), primary_key=True),
        sa.Column("job_key", sa.Text, primary_key=True),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("job_key", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("agent", sa.Text),
        sa.Column("device_id", sa.Text),
        sa.Column("agent_job_id", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "results",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("job_key", sa.Text, primary_key=True),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("samples", sa.LargeBinary),
        sa.Column("outputs", sa.LargeBinary),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "blobs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for name in ("blobs", "results", "attempts", "jobs", "runs"):
        op.drop_table(name)
