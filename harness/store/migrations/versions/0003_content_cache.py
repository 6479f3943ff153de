"""Content-addressed facts shared by every run: model facts by digest, and
reference outputs by (model digest, probe inputs, runtime), so a run of
files the store has seen needs neither the model inspection nor the
reference run again.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_facts",
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("format", sa.Text, primary_key=True),
        sa.Column("facts_version", sa.Integer, primary_key=True),
        sa.Column("facts_json", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "reference_outputs",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("model_digest", sa.Text, nullable=False),
        sa.Column("outputs", sa.LargeBinary, nullable=False),
        sa.Column("meta_json", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_reference_outputs_model", "reference_outputs", ["model_digest"])


def downgrade() -> None:
    op.drop_index("ix_reference_outputs_model", table_name="reference_outputs")
    op.drop_table("reference_outputs")
    op.drop_table("model_facts")
