"""The results store: runs, their sessions and lease, jobs, attempts, results
with raw samples, and blobs — one implementation over SQLAlchemy Core for
SQLite and PostgreSQL.

Guarantees, for any number of controllers writing at once:
* exactly one result per (run, job): the first write wins, a repeat is a
  no-op that says so (`put_result` returns False), never a second row;
* every write is its own committed transaction, so a controller killed
  mid-run loses nothing that finished;
* a run is worked on by one controller session at a time (`claim`), so a
  `--resume` elsewhere waits for the lease instead of interleaving;
* a run id is never reused (`create_run` raises RunExists).
Times of leases come from the database's clock, so controllers on machines
whose clocks disagree still agree on when a lease ends.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Mapping, Optional, Sequence

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from harness.kernel import arrays
from harness.kernel import limits
from harness.store import postgres, records
from harness.store.engine import Location
from harness.store.schema import attempts, blobs, jobs, results, run_sessions, runs


class RunExists(Exception):
    pass


WHO = ("user_name", "host_name", "git_commit", "ci_job_url")


class Store:
    def __init__(self, engine, location: Location, readonly: bool = False):
        self.engine = engine
        self.location = location
        self.readonly = readonly
        self.backend = location.backend
        # What messages name: the file, or the URL without its password.
        self.path = location.path if location.path is not None else location.display

    def close(self) -> None:
        self.engine.dispose()

    def _read(self):
        """A connection for reading: on SQLite a deferred BEGIN (a snapshot
        that never blocks the writer), not the writers' BEGIN IMMEDIATE."""
        return self.engine.connect().execution_options(harness_read=True)

    def _insert(self, table):
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _now(self):
        """The database's clock, in seconds since the epoch."""
        if self.backend == "postgresql":
            return func.extract("epoch", func.clock_timestamp())
        return (func.julianday("now") - 2440587.5) * 86400.0

    # -- runs -----------------------------------------------------------------
    def create_run(self, run_id: str, cohort: str, version: str, config: dict, started: Optional[float] = None,
                   who: Optional[Mapping[str, Any]] = None, session: Optional[str] = None) -> None:
        who = dict(who or {})
        started = started or time.time()
        try:
            with self.engine.begin() as c:
                c.execute(runs.insert().values(
                    id=run_id, cohort=cohort, started=started, status="running", harness_version=version,
                    config_json=json.dumps(config), lease_owner=session,
                    lease_until=(self._now() + limits.RUN_LEASE_S) if session else None,
                    **{k: who.get(k) for k in WHO}))
                if session:
                    c.execute(self._session_row(run_id, session, "create", who, version, started))
        except IntegrityError:
            raise RunExists(run_id) from None

    def _session_row(self, run_id, session, action, who, version, started):
        return run_sessions.insert().values(run_id=run_id, session=session, action=action, pid=who.get("pid"),
                                            harness_version=version, started=started,
                                            **{k: who.get(k) for k in WHO})

    def open_session(self, run_id: str, session: str, action: str, who: Mapping[str, Any], version: str) -> None:
        with self.engine.begin() as c:
            c.execute(self._session_row(run_id, session, action, dict(who), version, time.time()))

    def close_session(self, run_id: str, session: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(run_sessions).where(run_sessions.c.run_id == run_id, run_sessions.c.session == session)
                      .values(finished=time.time()))

    def finish_run(self, run_id: str, status: str, finished: Optional[float] = None,
                   session: Optional[str] = None) -> None:
        values: dict = {"finished": finished or time.time(), "status": status}
        with self.engine.begin() as c:
            c.execute(update(runs).where(runs.c.id == run_id).values(**values))
            if session:
                c.execute(update(runs).where(runs.c.id == run_id, runs.c.lease_owner == session)
                          .values(lease_owner=None, lease_until=None))

    def set_status(self, run_id: str, status: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(runs).where(runs.c.id == run_id).values(status=status, finished=None))

    def claim(self, run_id: str, owner: str, ttl_s: float = limits.RUN_LEASE_S,
              take_from: Optional[str] = None) -> Optional[dict]:
        """Take the run's lease for `owner`: None when taken (free, expired,
        already ours, or held by `take_from`, a session known to be dead),
        else who holds it (user, host, pid, session) and until when."""
        with self.engine.begin() as c:
            now = self._now()
            free = [runs.c.lease_owner.is_(None), runs.c.lease_until.is_(None), runs.c.lease_until < now,
                    runs.c.lease_owner == owner] + ([runs.c.lease_owner == take_from] if take_from else [])
            got = c.execute(update(runs).where(runs.c.id == run_id, or_(*free))
                            .values(lease_owner=owner, lease_until=now + ttl_s)).rowcount
            if got == 1:
                return None
            row = c.execute(select(runs.c.lease_owner, runs.c.lease_until, (runs.c.lease_until - now).label("left"))
                            .where(runs.c.id == run_id)).first()
            if row is None:
                raise KeyError(run_id)
            holder = c.execute(select(run_sessions).where(run_sessions.c.run_id == run_id,
                                                          run_sessions.c.session == row.lease_owner)).first()
            out = {"session": row.lease_owner, "until": row.lease_until, "seconds_left": float(row.left or 0)}
            if holder is not None:
                out.update({k: getattr(holder, k) for k in WHO}, action=holder.action, started=holder.started,
                           pid=holder.pid)
            return out

    def renew(self, run_id: str, owner: str, ttl_s: float = limits.RUN_LEASE_S) -> bool:
        with self.engine.begin() as c:
            return c.execute(update(runs).where(runs.c.id == run_id, runs.c.lease_owner == owner)
                             .values(lease_until=self._now() + ttl_s)).rowcount == 1

    def release(self, run_id: str, owner: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(runs).where(runs.c.id == run_id, runs.c.lease_owner == owner)
                      .values(lease_owner=None, lease_until=None))

    def get_run(self, run_id: str) -> Optional[dict]:
        with self._read() as c:
            row = c.execute(select(runs).where(runs.c.id == run_id)).first()
            if row is None:
                return None
            sess = c.execute(select(run_sessions).where(run_sessions.c.run_id == run_id)
                             .order_by(run_sessions.c.started)).all()
        out = {"id": row.id, "cohort": row.cohort, "started": row.started, "finished": row.finished,
               "status": row.status, "harness_version": row.harness_version, "config": json.loads(row.config_json),
               **{k: getattr(row, k) for k in WHO}}
        out["sessions"] = [{"session": s.session, "action": s.action, "pid": s.pid, "started": s.started,
                            "finished": s.finished, "harness_version": s.harness_version,
                            **{k: getattr(s, k) for k in WHO}} for s in sess]
        return out

    def list_runs(self, limit: int = 50, cohort: Optional[str] = None, candidate: Optional[str] = None,
                  status: Optional[str] = None, offset: int = 0) -> list[dict]:
        n_results = select(func.count()).where(results.c.run_id == runs.c.id).scalar_subquery()
        n_failed = select(func.count()).where(results.c.run_id == runs.c.id,
                                              results.c.status == "failed").scalar_subquery()
        n_jobs = select(func.count()).where(jobs.c.run_id == runs.c.id).scalar_subquery()
        q = select(runs.c.id, runs.c.cohort, runs.c.started, runs.c.finished, runs.c.status,
                   *[runs.c[k] for k in WHO], n_results.label("n_results"), n_failed.label("n_failed"),
                   n_jobs.label("n_jobs"))
        if cohort:
            q = q.where(runs.c.cohort == cohort)
        if status:
            q = q.where(runs.c.status == status)
        if candidate:
            q = q.where(exists().where(results.c.run_id == runs.c.id, results.c.candidate == candidate))
        q = q.order_by(runs.c.started.desc(), runs.c.id.desc()).limit(min(limit, limits.STORE_MAX_LIST)).offset(offset)
        with self._read() as c:
            rows = c.execute(q).all()
            cands: dict[str, list[str]] = {}
            if rows:
                for rid, cand in c.execute(select(results.c.run_id, results.c.candidate).distinct().where(
                        results.c.run_id.in_([r.id for r in rows])).order_by(results.c.candidate)):
                    cands.setdefault(rid, []).append(cand)
        return [{"id": r.id, "cohort": r.cohort, "started": r.started, "finished": r.finished, "status": r.status,
                 "results": r.n_results, "jobs": r.n_jobs, "failed": r.n_failed, "candidates": cands.get(r.id, []),
                 **{k: getattr(r, k) for k in WHO}} for r in rows]

    def facets(self) -> dict:
        """The values the dashboard's filters offer."""
        with self._read() as c:
            return {"cohorts": [r[0] for r in c.execute(select(runs.c.cohort).distinct().order_by(runs.c.cohort))],
                    "candidates": [r[0] for r in c.execute(select(results.c.candidate).distinct()
                                                           .order_by(results.c.candidate))],
                    "statuses": [r[0] for r in c.execute(select(runs.c.status).distinct().order_by(runs.c.status))]}

    def resolve_run(self, ref: str) -> Optional[str]:
        """A run id, a unique prefix of one, or 'latest'."""
        with self._read() as c:
            if ref in ("latest", "last"):
                return c.execute(select(runs.c.id).order_by(runs.c.started.desc(), runs.c.id.desc())
                                 .limit(1)).scalar()
            prefix = ref.replace("%", "").replace("_", "\\_") + "%"
            ids = [r[0] for r in c.execute(select(runs.c.id).where(or_(runs.c.id == ref,
                                                                       runs.c.id.like(prefix, escape="\\")))
                                           .order_by(runs.c.started.desc()).limit(limits.STORE_MAX_LIST))]
        if ref in ids:
            return ref
        return ids[0] if len(ids) == 1 else None

    # -- jobs -----------------------------------------------------------------
    def add_jobs(self, run_id: str, items: Sequence[tuple[str, int, dict]]) -> None:
        if not items:
            return
        with self.engine.begin() as c:
            c.execute(self._insert(jobs).on_conflict_do_nothing(index_elements=["run_id", "job_key"]),
                      [{"run_id": run_id, "job_key": k, "idx": i, "spec_json": json.dumps(s), "state": "pending"}
                       for k, i, s in items])

    def jobs(self, run_id: str) -> list[dict]:
        with self._read() as c:
            rows = c.execute(select(jobs.c.job_key, jobs.c.idx, jobs.c.spec_json, jobs.c.state)
                             .where(jobs.c.run_id == run_id).order_by(jobs.c.idx)).all()
        return [{"key": r[0], "idx": r[1], "spec": json.loads(r[2]), "state": r[3]} for r in rows]

    def record_attempt(self, run_id: str, job_key: str, attempt: int, agent: str, device_id: str,
                       agent_job_id: str, outcome: str, message: str = "") -> None:
        with self.engine.begin() as c:
            c.execute(attempts.insert().values(run_id=run_id, job_key=job_key, attempt=attempt, agent=agent,
                                               device_id=device_id, agent_job_id=agent_job_id, outcome=outcome,
                                               message=message, at=time.time()))

    def record_attempts(self, run_id: str, rows: Sequence[dict]) -> None:
        """Many attempts (each a dict of record_attempt's arguments after
        run_id, with `at`) in one transaction."""
        if rows:
            with self.engine.begin() as c:
                c.execute(attempts.insert(), [{"run_id": run_id, **r} for r in rows])

    def attempts(self, run_id: str, job_key: Optional[str] = None) -> list[dict]:
        q = select(attempts.c.job_key, attempts.c.attempt, attempts.c.agent, attempts.c.device_id,
                   attempts.c.agent_job_id, attempts.c.outcome, attempts.c.message, attempts.c.at
                   ).where(attempts.c.run_id == run_id)
        if job_key:
            q = q.where(attempts.c.job_key == job_key)
        with self._read() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(attempts.c.at))]

    # -- results --------------------------------------------------------------
    def put_result(self, run_id: str, job_key: str, record: dict,
                   outputs: Optional[list[dict]] = None) -> bool:
        """Store one result row; returns False (and stores nothing) if the job
        already has one: exactly one result row per job."""
        return job_key in self.put_results(run_id, [(job_key, record, outputs)])

    def put_results(self, run_id: str, items: Iterable[tuple[str, dict, Optional[list[dict]]]]) -> set[str]:
        """Store many results in one transaction (PostgreSQL: one COPY);
        returns the job keys stored now (not those that already had a row)."""
        base = time.time()
        rows, seen = [], set()
        for k, rec, outs in items:
            if k in seen:
                continue
            seen.add(k)
            # `created` orders a run's rows as they were written, bulk or not.
            rows.append(records.to_row(run_id, k, rec, arrays.pack(outs) if outs else None,
                                       base + len(rows) * 1e-6))
        if not rows:
            return set()
        with self.engine.begin() as c:
            if self.backend == "postgresql" and len(rows) >= limits.STORE_COPY_MIN_ROWS:
                stored = postgres.copy_results(c, rows)
            else:
                ins = (self._insert(results).on_conflict_do_nothing(index_elements=["run_id", "job_key"])
                       .returning(results.c.job_key))  # RETURNING: a row back only when one was inserted
                stored = [r["job_key"] for r in rows if c.execute(ins.values(**r)).first() is not None]
            if stored:
                c.execute(update(jobs).where(jobs.c.run_id == run_id, jobs.c.job_key.in_(stored))
                          .values(state="done"))
        return set(stored)

    def results(self, run_id: str, with_outputs: bool = False) -> list[dict]:
        cols = [results.c.record_json, results.c.samples] + ([results.c.outputs] if with_outputs else [])
        with self._read() as c:
            rows = c.execute(select(*cols).where(results.c.run_id == run_id)
                             .order_by(results.c.created, results.c.job_key)).all()
        out = []
        for r in rows:
            rec = records.from_row(r[0], r[1])
            if with_outputs:
                rec["_outputs"] = arrays.unpack(r[2])
            out.append(rec)
        return out

    def results_without_samples(self, run_id: str) -> list[dict]:
        """Every record of the run in `results` order, its `timing.samples_ms`
        empty: what an analysis of many results reads (the statistics are in
        the record); `iter_samples` streams the samples beside it."""
        with self._read() as c:
            rows = c.execute(select(results.c.record_json).where(results.c.run_id == run_id)
                             .order_by(results.c.created, results.c.job_key)).all()
        return [records.from_row(r[0], None) for r in rows]

    def iter_samples(self, run_id: str, batch: Optional[int] = None):
        """(job key, samples as a float64 array) of every result in `results`
        order, fetched `batch` rows at a time from one query: memory holds one
        batch (the query is a read snapshot, so a writer is never blocked)."""
        batch = batch or limits.REPORT_BATCH
        q = (select(results.c.job_key, results.c.samples).where(results.c.run_id == run_id)
             .order_by(results.c.created, results.c.job_key))
        with self._read() as c:
            cur = c.execution_options(stream_results=True).execute(q)
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    return
                for r in rows:
                    yield r[0], records.unpack_samples(r[1])

    def outputs(self, run_id: str) -> dict[str, list[dict]]:
        """job key -> its probe outputs, without decoding records or samples."""
        with self._read() as c:
            rows = c.execute(select(results.c.job_key, results.c.outputs).where(results.c.run_id == run_id)).all()
        return {r[0]: arrays.unpack(r[1]) for r in rows}

    def done_keys(self, run_id: str) -> set[str]:
        with self._read() as c:
            return {r[0] for r in c.execute(select(results.c.job_key).where(results.c.run_id == run_id))}

    def series(self, candidate: str, profile: Optional[str] = None, target: Optional[str] = None,
               last: Optional[int] = None) -> list[dict]:
        """Every stored result of a candidate (on one profile / target, or
        all), oldest run first, each with its run's id, start and status; with
        `last`, only each (profile, target)'s newest `last` runs. Samples come
        as float64 arrays (`timing.samples_ms`), not lists."""
        conds = [results.c.candidate == candidate]
        if profile:
            conds.append(results.c.profile == profile)
        if target:
            conds.append(results.c.target == target)
        rank = func.dense_rank().over(partition_by=(results.c.profile, results.c.target),
                                      order_by=(runs.c.started.desc(), runs.c.id.desc()))
        inner = (select(results.c.run_id, results.c.job_key, results.c.profile, results.c.target,
                        results.c.status, results.c.record_json, results.c.samples, results.c.created,
                        runs.c.started.label("run_started"), runs.c.status.label("run_status"),
                        runs.c.cohort.label("cohort"), rank.label("rk"))
                 .select_from(results.join(runs, runs.c.id == results.c.run_id)).where(and_(*conds)).subquery())
        n = min(last or limits.HISTORY_MAX_RUNS, limits.HISTORY_MAX_RUNS)
        q = select(inner).where(inner.c.rk <= n).order_by(inner.c.run_started, inner.c.run_id, inner.c.created)
        with self._read() as c:
            rows = c.execute(q).all()
        return [{"run_id": r.run_id, "run_started": r.run_started, "run_status": r.run_status, "cohort": r.cohort,
                 "job": r.job_key, "profile": r.profile, "target": r.target, "status": r.status,
                 "record": records.from_row(r.record_json, r.samples, as_array=True)} for r in rows]

    def records_on(self, profile: str, target: str, limit: int = limits.NOISE_MAX_RECORDS,
                   other_than: Optional[str] = None) -> list[dict]:
        """The newest measured records of any candidate (but `other_than`) on
        one device profile and runtime target, without their samples
        (`timing.sessions` keeps each session's figures), newest first, each
        with `_run_id`: what the noise floor learns from (harness.analysis.noise)."""
        conds = [results.c.profile == profile, results.c.target == target, results.c.status == "ok"]
        if other_than is not None:
            conds.append(results.c.candidate != other_than)
        q = (select(results.c.run_id, results.c.record_json).where(and_(*conds))
             .order_by(results.c.created.desc()).limit(min(limit, limits.NOISE_MAX_RECORDS)))
        with self._read() as c:
            rows = c.execute(q).all()
        return [{**json.loads(r.record_json), "_run_id": r.run_id} for r in rows]

    # -- blobs (probes, labels, reference outputs) ----------------------------
    def put_blob(self, run_id: str, name: str, data: bytes) -> None:
        ins = self._insert(blobs)
        with self.engine.begin() as c:
            c.execute(ins.values(run_id=run_id, name=name, data=data).on_conflict_do_update(
                index_elements=["run_id", "name"], set_={"data": ins.excluded.data}))

    def get_blob(self, run_id: str, name: str) -> Optional[bytes]:
        with self._read() as c:
            v = c.execute(select(blobs.c.data).where(blobs.c.run_id == run_id, blobs.c.name == name)).scalar()
        return bytes(v) if v is not None else None

