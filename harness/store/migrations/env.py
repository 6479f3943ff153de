"""Alembic's environment for the results store.

harness runs migrations itself (`harness store migrate`, harness/store/engine.py),
handing Alembic an open connection in `config.attributes["connection"]`, so
no alembic.ini or database URL lives here. Render-as-batch lets the same
revision alter tables on SQLite, whose ALTER TABLE cannot change a column
(Alembic's "batch" mode copies the table instead, docs: "Running Batch
Migrations for SQLite and Other Databases").
"""

from alembic import context

from harness.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("run store migrations through `harness store migrate`, not the alembic command")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
