"""The results store on both backends: SQLite files and a real PostgreSQL
server, through the same interface and with the same answers."""

import numpy as np
import pytest
from sqlalchemy import text

from harness.store.engine import StoreError, locate
from harness.store.opening import open_store
from harness.store.store import RunExists
from storekit import record


def test_round_trip_keeps_every_sample_bit_for_bit(store_url):
    s = open_store(store_url)
    try:
        s.create_run("r1", "cohort-a", "0.2.0", {"k": [1, 2]}, started=1000.0,
                     who={"user_name": "qa", "host_name": "laptop-7", "git_commit": "ab" * 20,
                          "ci_job_url": "https://ci.example/job/9", "pid": 42}, session="sess-1")
        s.add_jobs("r1", [("a", 0, {"profile": "p"}), ("b", 1, {"profile": "p"})])
        samples = np.random.default_rng(3).lognormal(1.0, 0.3, 997).tolist()  # not representable in short decimals
        outputs = [{"logits": np.arange(6, dtype=np.float32).reshape(2, 3)}]
        assert s.put_result("r1", "a", record("a", samples=samples), outputs) is True
        assert s.put_result("r1", "a", record("a", samples=[1.0])) is False  # first write wins
        assert s.put_result("r1", "b", record("b", error={"stage": "run", "kind": "load", "message": "bad"}))
        s.record_attempt("r1", "a", 1, "local", "host:vm", "r1.0000.a1", "result")
        s.put_blob("r1", "probes/m", b"\x00\x01")
        s.put_blob("r1", "probes/m", b"\x02")  # replaced, as the reference writer expects

        [ra, rb] = s.results("r1", with_outputs=True)
        assert ra["timing"]["samples_ms"] == samples
        np.testing.assert_array_equal(ra["_outputs"][0]["logits"], outputs[0]["logits"])
        assert rb["error"]["kind"] == "load" and rb["timing"]["samples_ms"] == []
        assert s.done_keys("r1") == {"a", "b"}
        assert [j["state"] for j in s.jobs("r1")] == ["done", "done"]
        assert s.get_blob("r1", "probes/m") == b"\x02" and s.get_blob("r1", "nothing") is None
        assert [a["outcome"] for a in s.attempts("r1", "a")] == ["result"]
        run = s.get_run("r1")
        assert (run["user_name"], run["host_name"], run["ci_job_url"]) == ("qa", "laptop-7", "https://ci.example/job/9")
        assert run["config"] == {"k": [1, 2]} and run["sessions"][0]["action"] == "create"
        [listed] = s.list_runs()
        assert (listed["results"], listed["jobs"], listed["failed"], listed["candidates"]) == (2, 2, 1, ["m"])
        s.finish_run("r1", "finished", session="sess-1")
        assert s.get_run("r1")["status"] == "finished"
    finally:
        s.close()


def test_run_ids_are_never_reused(store_url):
    s = open_store(store_url)
    try:
        s.create_run("same", "c", "v", {})
        with pytest.raises(RunExists):
            s.create_run("same", "other", "v", {})
        assert s.get_run("same")["cohort"] == "c"
    finally:
        s.close()


def test_bulk_write_stores_only_new_rows_once(store_url):
    s = open_store(store_url)
    try:
        s.create_run("r", "c", "v", {})
        s.add_jobs("r", [(f"k{i}", i, {}) for i in range(40)])
        assert s.put_result("r", "k3", record("k3", samples=[9.0]))
        # 40 rows is over the COPY threshold: PostgreSQL takes the COPY path.
        got = s.put_results("r", [(f"k{i}", record(f"k{i}", seed=i), None) for i in range(40)])
        assert got == {f"k{i}" for i in range(40)} - {"k3"}
        rows = s.results("r")
        assert len(rows) == 40 and len({r["job"] for r in rows}) == 40
        assert next(r for r in rows if r["job"] == "k3")["timing"]["samples_ms"] == [9.0]
        assert [r["job"] for r in rows][1:] == [f"k{i}" for i in range(40) if i != 3]  # written order
        assert s.put_results("r", [(f"k{i}", record(f"k{i}"), None) for i in range(40)]) == set()
    finally:
        s.close()


def test_history_series_is_indexed_and_limited_per_series(store_url):
    s = open_store(store_url)
    try:
        for n in range(6):
            rid = f"run{n}"
            s.create_run(rid, "c", "v", {}, started=1000.0 + n)
            s.put_result(rid, "p1/m/t", record("p1/m/t", profile="p1", target="t", seed=n))
            s.put_result(rid, "p2/m/t", record("p2/m/t", profile="p2", target="t", seed=n))
            s.put_result(rid, "p1/other/t", record("p1/other/t", candidate="other", profile="p1", target="t"))
        rows = s.series("m", last=3)
        assert [(r["run_id"], r["profile"]) for r in rows if r["profile"] == "p1"] == \
            [("run3", "p1"), ("run4", "p1"), ("run5", "p1")]
        assert len([r for r in rows if r["profile"] == "p2"]) == 3
        assert {r["record"]["candidate"] for r in rows} == {"m"}
        assert [r["run_id"] for r in s.series("m", profile="p2")] == [f"run{n}" for n in range(6)]
        assert s.series("m", profile="p2", target="nope") == []
        assert [r["id"] for r in s.list_runs(candidate="other", limit=2)] == ["run5", "run4"]
        assert s.facets()["candidates"] == ["m", "other"]
    finally:
        s.close()


def test_resolve_run_by_prefix_and_latest(store_url):
    s = open_store(store_url)
    try:
        s.create_run("20260101-000000-aaaa", "c", "v", {}, started=1.0)
        s.create_run("20260102-000000-bbbb", "c", "v", {}, started=2.0)
        s.create_run("x_y", "c", "v", {}, started=0.5)
        s.create_run("xay", "c", "v", {}, started=0.4)
        assert s.resolve_run("latest") == "20260102-000000-bbbb"
        assert s.resolve_run("20260101") == "20260101-000000-aaaa"
        assert s.resolve_run("2026") is None  # ambiguous
        assert s.resolve_run("x_") == "x_y"  # "_" is a character here, not LIKE's any-character
    finally:
        s.close()


def test_read_only_store_refuses_writes_in_the_database(store_url):
    open_store(store_url).close()
    ro = open_store(store_url, readonly=True)
    try:
        with pytest.raises(Exception) as exc:
            ro.create_run("r", "c", "v", {})
        assert "read" in str(exc.value).lower()  # "readonly database" / "read-only transaction"
        assert ro.list_runs() == []
    finally:
        ro.close()


def test_a_missing_sqlite_store_is_named_and_not_created(tmp_path):
    path = tmp_path / "nowhere" / "results.sqlite"
    with pytest.raises(StoreError, match="no results store at .*nowhere"):
        open_store(str(path), create=False)
    assert not path.parent.exists()


def test_urls_are_parsed_and_passwords_never_shown():
    loc = locate("postgresql://lab:s3cret@db.example:5433/harness")
    assert loc.backend == "postgresql" and "s3cret" not in loc.display and "db.example:5433/harness" in loc.display
    assert locate("postgres://u@h/db").backend == "postgresql"
    # SQLAlchemy's convention: three slashes and a relative path, four for an absolute one.
    assert locate("sqlite:////tmp/x.sqlite").path.as_posix() == "/tmp/x.sqlite"
    assert locate("sqlite:///rel/x.sqlite").path.as_posix() == "rel/x.sqlite"
    with pytest.raises(StoreError, match="unsupported scheme 'mysql'"):
        locate("mysql://u@h/db")
    with pytest.raises(StoreError, match="names no database"):
        locate("postgresql://u@h:5432")


def test_an_unreachable_server_is_one_line_not_a_hang(postgres_server):
    from pgkit import free_port

    with pytest.raises(StoreError, match=r"cannot connect") as exc:
        open_store(f"postgresql://harness@127.0.0.1:{free_port()}/nothing")
    assert "\n" not in str(exc.value)


def test_postgres_samples_are_stored_compactly(pg_url):
    s = open_store(pg_url)
    try:
        s.create_run("r", "c", "v", {})
        s.put_result("r", "k", record("k", samples=[float(i) for i in range(1000)]))
        with s.engine.connect() as c:
            n = c.execute(text("SELECT octet_length(samples) FROM results")).scalar()
            rec = c.execute(text("SELECT record_json FROM results")).scalar()
        assert n == 8 * 1000 and "samples_ms" not in rec  # 8 bytes a sample, not JSON text
    finally:
        s.close()


def test_which_store_a_command_uses(tmp_path):
    from harness.store.engine import choose

    env = {"HARNESS_STORE": "postgresql://ci@db/h"}
    assert choose("flag.sqlite", "lab.sqlite", tmp_path, env) == "flag.sqlite"  # --store first
    assert choose(None, "lab.sqlite", tmp_path, env) == "postgresql://ci@db/h"  # then the environment
    assert choose(None, "lab.sqlite", tmp_path, {}) == str(tmp_path / "lab.sqlite")  # then the lab file, beside it
    assert choose(None, "postgresql://u@h/d", tmp_path, {}) == "postgresql://u@h/d"
    assert choose(None, None, None, {"HARNESS_STORE": "  "}) is None  # then the default file
    assert locate(None, cwd=tmp_path, environ={}).path == tmp_path / ".harness" / "results.sqlite"
    assert locate(None, environ=env).backend == "postgresql"
