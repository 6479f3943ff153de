"""Many writers at once, in separate processes, against one store: nothing
lost, nothing duplicated, one controller per run."""

import multiprocessing as mp
import random
import time

import pytest

from harness.store import migrate
from harness.store.engine import StoreError, locate
from harness.store.lease import Lease
from harness.store.opening import open_store

KEYS = [f"dev-{i // 10}/m/t{i % 10}" for i in range(60)]
WRITERS = 4
DEADLINE_S = 120


def _writer(url: str, writer: int, barrier, out):
    from storekit import record  # tests/ is on the path the spawned child inherits

    s = open_store(url)
    try:
        barrier.wait(DEADLINE_S)
        own = f"own-{writer}"
        s.create_run(own, "c", "v", {}, session=own)
        keys = list(KEYS)
        random.Random(writer).shuffle(keys)
        stored_shared, stored_own = [], []
        for i, k in enumerate(keys):
            rec = record(k, seed=writer)
            rec["writer"] = writer
            if s.put_result("shared", k, rec):
                stored_shared.append(k)
            if i % 3 == 0:  # now and then a bulk write of the writer's own run
                stored_own += sorted(s.put_results(own, [(f"{own}/{k}/{j}", record(f"{own}/{k}/{j}"), None)
                                                         for j in range(5)]))
            else:
                if s.put_result(own, f"{own}/{k}", record(f"{own}/{k}")):
                    stored_own.append(f"{own}/{k}")
        out.put((writer, stored_shared, stored_own))
    finally:
        s.close()


def test_concurrent_controllers_lose_and_duplicate_nothing(store_url):
    s = open_store(store_url)
    s.create_run("shared", "c", "v", {})
    s.add_jobs("shared", [(k, i, {}) for i, k in enumerate(KEYS)])
    s.close()
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(store_url, w, barrier, out)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=DEADLINE_S) for _ in procs]
    for p in procs:
        p.join(DEADLINE_S)
        assert p.exitcode == 0
    s = open_store(store_url)
    try:
        rows = s.results("shared")
        # Every job has exactly one row, and it is the one its writer was told it stored.
        assert sorted(r["job"] for r in rows) == sorted(KEYS)
        claimed = {k: w for w, shared, _ in reports for k in shared}
        assert sorted(claimed) == sorted(KEYS) and sum(len(r[1]) for r in reports) == len(KEYS)
        assert all(r["writer"] == claimed[r["job"]] for r in rows)
        assert {j["state"] for j in s.jobs("shared")} == {"done"}
        for w, _, own in reports:
            mine = [r["job"] for r in s.results(f"own-{w}")]
            assert sorted(mine) == sorted(own) and len(mine) == len(set(mine)) == 20 * 5 + 40
    finally:
        s.close()


def _opener(url, barrier, out):
    barrier.wait(DEADLINE_S)
    try:
        open_store(url).close()
        out.put("ok")
    except Exception as exc:  # reported, so the test shows what went wrong
        out.put(f"{type(exc).__name__}: {exc}")


def test_controllers_creating_one_new_store_at_once_take_turns(store_url):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(store_url, barrier, out)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [out.get(timeout=DEADLINE_S) for _ in procs]
    for p in procs:
        p.join(DEADLINE_S)
    assert got == ["ok"] * 3
    assert migrate.current(locate(store_url)).revision == migrate.head()


def test_a_run_is_worked_on_by_one_session_at_a_time(store_url):
    s = open_store(store_url)
    try:
        s.create_run("r", "c", "v", {}, who={"user_name": "ci-bot", "host_name": "runner-3",
                                             "ci_job_url": "https://ci.example/jobs/77"}, session="first")
        with pytest.raises(StoreError, match=r"run r is being worked on by ci-bot on runner-3, "
                                             r"https://ci.example/jobs/77 \(session first"):
            Lease(s, "r", "second").acquire()
        assert s.renew("r", "first", 0.3)  # the owner renews; then stops (a controller that died)
        time.sleep(0.6)
        lease = Lease(s, "r", "second", ttl_s=0.4).acquire().start()  # expired: a resume elsewhere takes it
        s.open_session("r", "second", "resume", {"user_name": "qa", "host_name": "laptop"}, "v")
        assert not s.renew("r", "first", 10)  # the old owner cannot take it back by renewing
        time.sleep(0.6)  # longer than the lease: the heartbeat keeps it
        assert s.claim("r", "third") is not None and not lease.lost
        lease.stop()
        assert s.claim("r", "third") is None  # released
        assert [x["action"] for x in s.get_run("r")["sessions"]] == ["create", "resume"]
    finally:
        s.close()
