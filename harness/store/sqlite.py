"""SQLite results store. Each result is committed as it arrives (WAL mode),
so a controller killed mid-run loses nothing that finished."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY,
  cohort TEXT NOT NULL,
  started REAL NOT NULL,
  finished REAL,
  status TEXT NOT NULL,
  harness_version TEXT NOT NULL,
  config_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  run_id TEXT NOT NULL REFERENCES runs(id),
  job_key TEXT NOT NULL,
  idx INTEGER NOT NULL,
  spec_json TEXT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (run_id, job_key)
);
CREATE TABLE IF NOT EXISTS attempts (
  run_id TEXT NOT NULL,
  job_key TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  agent TEXT,
  device_id TEXT,
  agent_job_id TEXT,
  outcome TEXT NOT NULL,
  message TEXT,
  at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
  run_id TEXT NOT NULL,
  job_key TEXT NOT NULL,
  record_json TEXT NOT NULL,
  samples BLOB,
  outputs BLOB,
  created REAL NOT NULL,
  PRIMARY KEY (run_id, job_key)
);
CREATE TABLE IF NOT EXISTS blobs (
  run_id TEXT NOT NULL,
  name TEXT NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (run_id, name)
);
"""


def pack_arrays(arrays: list[dict[str, np.ndarray]]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{f"{i}/{k}": v for i, d in enumerate(arrays) for k, v in d.items()})
    return buf.getvalue()


def unpack_arrays(blob: Optional[bytes]) -> list[dict[str, np.ndarray]]:
    if not blob:
        return []
    out: list[dict[str, np.ndarray]] = []
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        for key in data.files:
            idx, name = key.split("/", 1)
            while len(out) <= int(idx):
                out.append({})
            out[int(idx)][name] = data[key]
    return out


class SqliteStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(args))

    # -- runs -----------------------------------------------------------------
    def create_run(self, run_id: str, cohort: str, version: str, config: dict, started: Optional[float] = None) -> None:
        self._exec("INSERT INTO runs(id, cohort, started, status, harness_version, config_json) VALUES (?,?,?,?,?,?)",
                   (run_id, cohort, started or time.time(), "running", version, json.dumps(config)))

    def finish_run(self, run_id: str, status: str, finished: Optional[float] = None) -> None:
        self._exec("UPDATE runs SET finished=?, status=? WHERE id=?", (finished or time.time(), status, run_id))

    def set_status(self, run_id: str, status: str) -> None:
        self._exec("UPDATE runs SET status=?, finished=NULL WHERE id=?", (status, run_id))

    def get_run(self, run_id: str) -> Optional[dict]:
        row = self._exec("SELECT id, cohort, started, finished, status, harness_version, config_json FROM runs WHERE id=?",
                         (run_id,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "cohort": row[1], "started": row[2], "finished": row[3], "status": row[4],
                "harness_version": row[5], "config": json.loads(row[6])}

    def list_runs(self, limit: int = 50) -> list[dict]:
        rows = self._exec(
            "SELECT r.id, r.cohort, r.started, r.finished, r.status, "
            "(SELECT COUNT(*) FROM results x WHERE x.run_id=r.id), "
            "(SELECT COUNT(*) FROM jobs j WHERE j.run_id=r.id) "
            "FROM runs r ORDER BY r.started DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "cohort": r[1], "started": r[2], "finished": r[3], "status": r[4],
                 "results": r[5], "jobs": r[6]} for r in rows]

    def resolve_run(self, ref: str) -> Optional[str]:
        """A run id, a unique prefix of one, or 'latest'."""
        if ref in ("latest", "last"):
            row = self._exec("SELECT id FROM runs ORDER BY started DESC LIMIT 1").fetchone()
            return row[0] if row else None
        rows = self._exec("SELECT id FROM runs WHERE id = ? OR id LIKE ? ORDER BY started DESC",
                          (ref, ref.replace("%", "") + "%")).fetchall()
        exact = [r[0] for r in rows if r[0] == ref]
        if exact:
            return exact[0]
        return rows[0][0] if len(rows) == 1 else None

    # -- jobs -----------------------------------------------------------------
    def add_jobs(self, run_id: str, jobs: list[tuple[str, int, dict]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO jobs(run_id, job_key, idx, spec_json, state) VALUES (?,?,?,?, 'pending')",
                [(run_id, k, i, json.dumps(s)) for k, i, s in jobs])
            self._db.execute("COMMIT")

    def jobs(self, run_id: str) -> list[dict]:
        rows = self._exec("SELECT job_key, idx, spec_json, state FROM jobs WHERE run_id=? ORDER BY idx",
                          (run_id,)).fetchall()
        return [{"key": r[0], "idx": r[1], "spec": json.loads(r[2]), "state": r[3]} for r in rows]

    def record_attempt(self, run_id: str, job_key: str, attempt: int, agent: str, device_id: str,
                       agent_job_id: str, outcome: str, message: str = "") -> None:
        self._exec("INSERT INTO attempts VALUES (?,?,?,?,?,?,?,?,?)",
                   (run_id, job_key, attempt, agent, device_id, agent_job_id, outcome, message, time.time()))

    def attempts(self, run_id: str, job_key: Optional[str] = None) -> list[dict]:
        sql = "SELECT job_key, attempt, agent, device_id, agent_job_id, outcome, message, at FROM attempts WHERE run_id=?"
        args: list = [run_id]
        if job_key:
            sql += " AND job_key=?"
            args.append(job_key)
        rows = self._exec(sql + " ORDER BY at", args).fetchall()
        keys = ("job_key", "attempt", "agent", "device_id", "agent_job_id", "outcome", "message", "at")
        return [dict(zip(keys, r)) for r in rows]

    # -- results --------------------------------------------------------------
    def put_result(self, run_id: str, job_key: str, record: dict,
                   outputs: Optional[list[dict[str, np.ndarray]]] = None) -> bool:
        """Store one result row; returns False (and stores nothing) if the job
        already has one: exactly one result row per job."""
        rec = dict(record)
        timing = dict(rec.get("timing") or {})
        samples = timing.pop("samples_ms", None)
        rec["timing"] = timing
        blob = np.asarray(samples if samples is not None else [], dtype="<f8").tobytes()
        out_blob = pack_arrays(outputs) if outputs else None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO results(run_id, job_key, record_json, samples, outputs, created) "
                    "VALUES (?,?,?,?,?,?)", (run_id, job_key, json.dumps(rec), blob, out_blob, time.time()))
                inserted = cur.rowcount == 1
                if inserted:
                    self._db.execute("UPDATE jobs SET state='done' WHERE run_id=? AND job_key=?", (run_id, job_key))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return inserted

    def results(self, run_id: str, with_outputs: bool = False) -> list[dict]:
        cols = "job_key, record_json, samples" + (", outputs" if with_outputs else "")
        rows = self._exec(f"SELECT {cols} FROM results WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()
        out = []
        for r in rows:
            rec = json.loads(r[1])
            rec.setdefault("timing", {})["samples_ms"] = np.frombuffer(r[2] or b"", dtype="<f8").tolist()
            if with_outputs:
                rec["_outputs"] = unpack_arrays(r[3])
            out.append(rec)
        return out

    def outputs(self, run_id: str) -> dict[str, list[dict[str, np.ndarray]]]:
        """job key -> its probe outputs, without decoding records or samples
        (the analysis needs only these once it has the results)."""
        rows = self._exec("SELECT job_key, outputs FROM results WHERE run_id=?", (run_id,)).fetchall()
        return {r[0]: unpack_arrays(r[1]) for r in rows}

    def done_keys(self, run_id: str) -> set[str]:
        return {r[0] for r in self._exec("SELECT job_key FROM results WHERE run_id=?", (run_id,)).fetchall()}

    # -- blobs (probes, labels, reference outputs) ---------------------------------
    def put_blob(self, run_id: str, name: str, data: bytes) -> None:
        self._exec("INSERT OR REPLACE INTO blobs(run_id, name, data) VALUES (?,?,?)", (run_id, name, data))

    def get_blob(self, run_id: str, name: str) -> Optional[bytes]:
        row = self._exec("SELECT data FROM blobs WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        return row[0] if row else None
