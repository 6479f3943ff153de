"""Schema revisions: a store made by harness 0.1.0 upgrades with every run
intact, a newer store is refused untouched, and both backends end at exactly
the tables harness/store/schema.py defines."""

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from harness.kernel import arrays
from harness.store import migrate
from harness.store.engine import StoreError, locate, make_engine
from harness.store.opening import open_store
from harness.store.schema import metadata

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "store-0.1.0.sqlite"  # made by `harness run` of release 0.1.0 (data/README.md)
RUNS = {"20261201-201002-e266": 2, "20261201-201006-c747": 2, "20261201-201024-90ba": 4}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def as_written(path: Path) -> dict:
    """The fixture's content decoded the way 0.1.0 stored it, with sqlite3
    alone: records with their float64 samples, jobs, attempts, blobs."""
    db = sqlite3.connect(path)
    out = {"runs": {}, "results": {}, "jobs": {}, "attempts": {}, "blobs": {}}
    for rid, cohort, started, finished, status, ver, cfg in db.execute("SELECT * FROM runs"):
        out["runs"][rid] = (cohort, started, finished, status, ver, json.loads(cfg))
    for rid, key, rec, samples, outputs, _created in db.execute("SELECT * FROM results"):
        r = json.loads(rec)
        r["timing"]["samples_ms"] = np.frombuffer(samples or b"", dtype="<f8").tolist()
        out["results"][(rid, key)] = (r, outputs)
    for rid, key, idx, spec, state in db.execute("SELECT * FROM jobs"):
        out["jobs"][(rid, key)] = (idx, json.loads(spec), state)
    for row in db.execute("SELECT * FROM attempts"):
        out["attempts"].setdefault(row[0], []).append(row[1:])
    for rid, name, data in db.execute("SELECT * FROM blobs"):
        out["blobs"][(rid, name)] = data
    db.close()
    return out


@pytest.fixture
def old_store(tmp_path):
    p = tmp_path / "old-results.sqlite"
    shutil.copy(FIXTURE, p)
    return p


def test_an_old_store_is_refused_until_migrated_and_left_untouched(old_store):
    before = sha(old_store)
    with pytest.raises(StoreError, match=r"revision 0001 \(harness 0.1.0\).*harness store migrate --store"):
        open_store(str(old_store))
    assert sha(old_store) == before


def test_migrate_keeps_every_run_intact(old_store):
    expected = as_written(old_store)
    assert {rid: sum(1 for k in expected["results"] if k[0] == rid) for rid in expected["runs"]} == RUNS
    assert migrate.upgrade(locate(str(old_store))) == ("0001", migrate.head())
    assert migrate.upgrade(locate(str(old_store))) == (migrate.head(), migrate.head())  # a no-op the second time
    s = open_store(str(old_store))
    try:
        assert {r["id"]: r["results"] for r in s.list_runs()} == RUNS
        for rid, (cohort, started, finished, status, ver, cfg) in expected["runs"].items():
            run = s.get_run(rid)
            assert (run["cohort"], run["started"], run["finished"], run["status"], run["harness_version"],
                    run["config"]) == (cohort, started, finished, status, ver, cfg)
            assert run["user_name"] is None  # 0.1.0 did not record who ran it: unknown, not invented
            got = {r["job"]: r for r in s.results(rid, with_outputs=True)}
            for (r2, key), (rec, outputs) in expected["results"].items():
                if r2 != rid:
                    continue
                mine = dict(got[key])
                outs = mine.pop("_outputs")
                assert mine == rec
                want = arrays.unpack(outputs)
                assert [sorted(o) for o in outs] == [sorted(o) for o in want]
                for o, w in zip(outs, want):
                    for name in w:
                        np.testing.assert_array_equal(o[name], w[name])
            assert [(j["key"], j["idx"], j["spec"], j["state"]) for j in s.jobs(rid)] == sorted(
                [(k, *v) for (r2, k), v in expected["jobs"].items() if r2 == rid], key=lambda t: t[1])
            assert [tuple(a.values()) for a in s.attempts(rid)] == sorted(expected["attempts"].get(rid, []),
                                                                          key=lambda a: a[-1])
        for (rid, name), data in expected["blobs"].items():
            assert s.get_blob(rid, name) == data
        # The columns history queries were backfilled from the records.
        rows = s.series("teacher")
        assert {r["run_id"] for r in rows} == set(RUNS)
        assert {(r["profile"], r["status"]) for r in rows} == {("host-cpu", "ok"), ("pixel-x", "not_run")}
    finally:
        s.close()


def test_a_migrated_store_reports_what_the_old_release_reported(old_store):
    """report.json written by 0.1.0 for the third run: the same records
    (every sample) come back after the upgrade."""
    saved = json.loads((DATA / "store-0.1.0.report-20261201-201024-90ba.json").read_text())
    migrate.upgrade(locate(str(old_store)))
    s = open_store(str(old_store))
    try:
        got = {r["job"]: r for r in s.results("20261201-201024-90ba")}
    finally:
        s.close()
    assert set(got) == {r["job"] for r in saved["results"]}
    for r in saved["results"]:
        assert got[r["job"]]["timing"]["samples_ms"] == r["timing"]["samples_ms"]
        assert got[r["job"]]["timing"].get("p90_ms") == r["timing"].get("p90_ms")
        assert got[r["job"]]["error"] == r["error"]


def test_a_failed_migration_changes_nothing(old_store):
    db = sqlite3.connect(old_store)
    db.execute("INSERT INTO results VALUES ('no-such-run', 'k', '{}', NULL, NULL, 0)")  # an orphan row
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="rows without their run"):
        migrate.upgrade(locate(str(old_store)))
    assert migrate.current(locate(str(old_store))).legacy  # still the 0.1.0 store, all of it
    cols = [r[1] for r in sqlite3.connect(old_store).execute("PRAGMA table_info(results)")]
    assert "candidate" not in cols


def _stamp_newer(url_or_path: str) -> None:
    engine = make_engine(locate(url_or_path))
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0099'"))
    engine.dispose()


def test_a_newer_store_is_refused_and_never_written(store_url):
    s = open_store(store_url)
    s.create_run("r", "c", "v", {})
    s.close()
    _stamp_newer(store_url)
    loc = locate(store_url)
    before = sha(loc.path) if loc.path else None
    for attempt in (lambda: open_store(store_url), lambda: open_store(store_url, readonly=True),
                    lambda: migrate.upgrade(loc)):
        with pytest.raises(StoreError, match=r"revision 'f00dfeed0099', newer than this harness knows.*"
                                             r"nothing was read or written"):
            attempt()
    if before:
        assert sha(loc.path) == before
    engine = make_engine(loc, readonly=True)
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "f00dfeed0099"
        assert c.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    engine.dispose()


def _schema_diffs(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def same_type(_ctx, _inspected, _metadata, inspected_type, metadata_type):
        # 0.1.0 declared REAL where the schema says FLOAT: one type (REAL
        # affinity) to SQLite, so not a difference; anything else is compared.
        from sqlalchemy.types import Float

        if isinstance(inspected_type, Float) and isinstance(metadata_type, Float):
            return False
        return None

    engine = make_engine(locate(url), readonly=True)
    try:
        with engine.connect() as c:
            return compare_metadata(MigrationContext.configure(c, opts={"compare_type": same_type}), metadata)
    finally:
        engine.dispose()


def test_every_backend_ends_at_the_one_schema_definition(store_url, old_store):
    open_store(store_url).close()  # a new store: built by running every revision
    assert _schema_diffs(store_url) == []
    migrate.upgrade(locate(str(old_store)))  # and the 0.1.0 store, upgraded
    assert _schema_diffs(str(old_store)) == []


def test_postgres_upgrades_a_revision_0001_store(pg_url, old_store):
    """A store at 0001 on PostgreSQL, filled with 0.1.0's rows, upgrades and
    backfills there too (the same revision files on both backends)."""
    from alembic import command

    loc = locate(pg_url)
    engine = make_engine(loc, foreign_keys=False)
    with engine.begin() as c:
        command.upgrade(migrate._config(c), "0001")
    src = sqlite3.connect(old_store)
    with engine.begin() as c:
        for table in ("runs", "jobs", "attempts", "results", "blobs"):
            rows = src.execute(f"SELECT * FROM {table}").fetchall()
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            c.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + x for x in cols)})"),
                      [dict(zip(cols, r)) for r in rows])
    engine.dispose()
    with pytest.raises(StoreError, match="revision 0001"):
        open_store(pg_url)
    assert migrate.upgrade(loc) == ("0001", migrate.head())
    s = open_store(pg_url)
    try:
        assert {r["id"]: r["results"] for r in s.list_runs()} == RUNS
        assert {r["status"] for r in s.series("student")} == {"ok", "not_run"}
    finally:
        s.close()
    assert _schema_diffs(pg_url) == []


def test_sqlite_downgrade_and_upgrade_round_trip(old_store):
    from alembic import command

    migrate.upgrade(locate(str(old_store)))
    engine = create_engine(f"sqlite:///{old_store}")
    with engine.begin() as c:
        command.downgrade(migrate._config(c), "0001")
    engine.dispose()
    cols = [r[1] for r in sqlite3.connect(old_store).execute("PRAGMA table_info(results)")]
    assert cols == ["run_id", "job_key", "record_json", "samples", "outputs", "created"]
    assert migrate.upgrade(locate(str(old_store)))[1] == migrate.head()
    assert len(open_store(str(old_store)).list_runs()) == 3
