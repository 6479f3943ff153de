"""`harness store migrate`, `harness store copy`, `--store` / HARNESS_STORE,
through the real console script, as a user would type them."""

import json
import os
import shutil
from pathlib import Path

from labkit import harness_cli
from test_store_migrate import FIXTURE, RUNS, _stamp_newer
from harness.store import migrate

GAP_RUN = "20261201-201024-90ba"


def cli(*args, cwd, env=None):
    if env is None:
        return harness_cli(*args, cwd=cwd)
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "harness"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_an_old_store_opens_after_migrate_with_every_run(tmp_path):
    old = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, old)
    p = cli("runs", "--store", old, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert f"Run `harness store migrate --store {old}` to upgrade it" in p.stderr
    p = cli("store", "migrate", "--store", old, cwd=tmp_path)
    assert p.returncode == 0 and f"upgraded from schema revision 0001 to {migrate.HEAD}" in p.stdout, p.stderr
    p = cli("runs", "--store", old, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for rid, n in RUNS.items():
        line = next(x for x in p.stdout.splitlines() if x.startswith(rid))
        assert f"{n}/{n}" in line and "?@?" in line  # 0.1.0 did not record who ran it
    doc = json.loads(cli("report", GAP_RUN, "--format", "json", "--store", old, cwd=tmp_path).stdout)
    saved = json.loads((FIXTURE.parent / f"store-0.1.0.report-{GAP_RUN}.json").read_text())
    assert [r["timing"].get("samples_ms") for r in doc["results"]] == \
        [r["timing"].get("samples_ms") for r in saved["results"]]
    assert doc["decision"]["label"] == saved["decision"]["label"]
    again = cli("store", "migrate", "--store", old, cwd=tmp_path)
    assert f"already at schema revision {migrate.HEAD}" in again.stdout


def test_a_store_from_a_newer_harness_is_one_clear_line(tmp_path):
    store = tmp_path / "s.sqlite"
    assert cli("store", "migrate", "--store", store, cwd=tmp_path).returncode == 0  # creates it
    _stamp_newer(str(store))
    before = store.read_bytes()
    for args in (("runs",), ("report", "latest"), ("store", "migrate"), ("history", "--candidate", "m")):
        p = cli(*args, "--store", store, cwd=tmp_path)
        assert p.returncode == 2 and "newer than this harness knows" in p.stderr and "Traceback" not in p.stderr
    assert store.read_bytes() == before


def test_copy_into_postgres_and_harness_store_env(tmp_path, pg_url):
    old = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, old)
    cli("store", "migrate", "--store", old, cwd=tmp_path)
    p = cli("store", "copy", "--from", old, "--to", pg_url, cwd=tmp_path)
    assert p.returncode == 0 and "copied 3 run(s)" in p.stdout, p.stderr
    p = cli("store", "copy", "--from", old, "--to", pg_url, GAP_RUN, "nope", cwd=tmp_path)
    assert p.returncode == 2 and "1 already there" in p.stdout and "no such run(s)" in p.stderr and "nope" in p.stderr
    p = cli("runs", cwd=tmp_path, env={"HARNESS_STORE": pg_url})  # no --store: the environment names it
    assert p.returncode == 0 and all(rid in p.stdout for rid in RUNS), p.stderr
    a = json.loads(cli("report", GAP_RUN, "--format", "json", "--store", old, cwd=tmp_path).stdout)
    b = json.loads(cli("report", GAP_RUN, "--format", "json", cwd=tmp_path, env={"HARNESS_STORE": pg_url}).stdout)
    assert a["results"] == b["results"] and a["decision"] == b["decision"]


def test_bad_store_urls_are_one_line(tmp_path):
    p = cli("runs", "--store", "mysql://u@h/db", cwd=tmp_path)
    assert p.returncode == 2 and "unsupported scheme 'mysql'" in p.stderr
    p = cli("runs", "--store", "postgresql://u:pw@127.0.0.1:1/db", cwd=tmp_path)
    assert p.returncode == 2 and "cannot connect" in p.stderr and "pw" not in p.stderr.replace("postgresql", "")
