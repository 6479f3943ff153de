"""PostgreSQL's bulk path: many results in one COPY.

COPY is PostgreSQL's own bulk loader (docs: "COPY"; "Populating a Database"
recommends it over INSERTs for many rows). psycopg 3 streams rows to it in
the binary format (`Cursor.copy`, `Copy.set_types`, `Copy.write_row`, psycopg
docs "Using COPY TO and COPY FROM"), so samples go as bytea without any
text escaping. COPY cannot skip rows that already exist, and the store keeps
exactly one result per job, so the rows land in a temporary table first and
move with INSERT ... ON CONFLICT DO NOTHING, which reports which were new.
All of it runs inside the caller's transaction.
"""

from __future__ import annotations

from typing import Sequence

COLUMNS = ("run_id", "job_key", "record_json", "samples", "outputs", "created", "candidate", "profile", "target",
           "device_id", "status")
TYPES = ("text", "text", "text", "bytea", "bytea", "float8", "text", "text", "text", "text", "text")
_STAGE = "harness_results_in"


def copy_results(conn, rows: Sequence[dict]) -> list[str]:
    """Insert rows (dicts of COLUMNS) that are not stored yet; returns the
    job keys that were inserted. `conn` is a SQLAlchemy connection inside a
    transaction on the psycopg driver."""
    raw = conn.connection.driver_connection  # the psycopg Connection under SQLAlchemy's pool proxy
    cols = ", ".join(COLUMNS)
    with raw.cursor() as cur:
        # Per connection, emptied by every commit; a pooled connection reuses it.
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE results INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS")
        cur.execute(f"TRUNCATE {_STAGE}")
        with cur.copy(f"COPY {_STAGE} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(TYPES))
            for r in rows:
                copy.write_row(tuple(r[c] for c in COLUMNS))
        cur.execute(f"INSERT INTO results ({cols}) SELECT {cols} FROM {_STAGE} ORDER BY created "
                    "ON CONFLICT (run_id, job_key) DO NOTHING RETURNING job_key")
        return [r[0] for r in cur.fetchall()]
