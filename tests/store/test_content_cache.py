"""Content-addressed entries of the store: model facts and reference outputs
computed once per content, and a store at the newest revision opened without
Alembic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelkit
from harness.store import migrate, open_store


def test_the_head_constant_is_alembics_head():
    assert migrate.HEAD == migrate.head()


def test_a_store_at_the_head_opens_without_importing_alembic(tmp_path):
    url = str(tmp_path / "s.sqlite")
    open_store(url).close()  # created (and migrated) here
    code = ("import sys; from harness.store import open_store; open_store(sys.argv[1], create=False).close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_an_older_store_is_still_refused_with_the_command(tmp_path):
    from harness.store.engine import StoreError, locate

    url = str(tmp_path / "old.sqlite")
    open_store(url).close()
    import sqlite3

    db = sqlite3.connect(url)
    db.execute("UPDATE alembic_version SET version_num = '0002'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="harness store migrate"):
        open_store(url, create=False)
    assert migrate.current(locate(url)).revision == "0002"


def test_model_facts_are_kept_by_digest_and_read_back_without_onnx(tmp_path, monkeypatch):
    from harness import modelfacts

    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    store = open_store(str(tmp_path / "s.sqlite"))
    try:
        first = modelfacts.FactsCache(store)
        info, inventory = modelfacts.onnx_facts(model, first)
        first.flush(store)

        def no_inspection(*a, **k):
            raise AssertionError("the file was inspected again")

        monkeypatch.setattr(modelfacts, "inspect_onnx", no_inspection)
        again, inv2 = modelfacts.onnx_facts(tmp_path / "m.onnx", modelfacts.FactsCache(store))
        assert again == info and inv2 == inventory
        # Other bytes are another digest: inspected (and refused here by the stand-in).
        modelkit.mlp(tmp_path / "other.onnx", batch=2)
        with pytest.raises(AssertionError, match="inspected again"):
            modelfacts.onnx_facts(tmp_path / "other.onnx", modelfacts.FactsCache(store))
    finally:
        store.close()


def test_a_file_that_is_not_a_model_is_never_cached(tmp_path):
    from harness import modelfacts
    from harness.kernel.modelfile import ModelError

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    cache = modelfacts.FactsCache(None)
    for _ in range(2):
        with pytest.raises(ModelError):
            modelfacts.onnx_facts(junk, cache)
    assert cache.new == {}


def test_reference_outputs_are_computed_once_per_model_probes_and_runtime(tmp_path):
    from harness.analysis import reference

    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    runtime = reference.reference_runtime()
    assert runtime is not None and runtime.split()[0].startswith("onnxruntime")
    probes = [{"x": np.ones((1, 16), np.float32)}]
    key = reference.reference_key("d" * 64, probes, runtime)
    assert key == reference.reference_key("d" * 64, [{"x": np.ones((1, 16), np.float32)}], runtime)
    assert key != reference.reference_key("d" * 64, [{"x": np.zeros((1, 16), np.float32)}], runtime)
    assert key != reference.reference_key("d" * 64, probes, runtime + "x")
    assert key != reference.reference_key("e" * 64, probes, runtime)
    assert key != reference.reference_key("d" * 64, [{"x": np.ones((16, 1), np.float32)}], runtime)


def test_a_second_run_of_the_same_files_reuses_facts_and_reference(tmp_path, quick_cohort, monkeypatch):
    """Through the controller: run 2 inspects nothing and runs no reference
    child; its stored reference outputs equal run 1's."""
    from harness import api
    from harness.analysis import reference
    from harness.kernel import arrays

    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    url = str(tmp_path / "s.sqlite")
    req = lambda: api.RunRequest(cohort=str(quick_cohort), models=[f"m={model}"], drivers=["host"], store=url,
                                 probes=2)
    first = api.run_cohort(req())
    calls: list = []
    real = reference._run_child
    monkeypatch.setattr(reference, "_run_child", lambda *a, **k: calls.append(a) or real(*a, **k))
    import harness.modelfacts as mf

    monkeypatch.setattr(mf, "inspect_onnx", lambda *a, **k: pytest.fail("inspected a file the store knows"))
    second = api.run_cohort(req())
    assert calls == []
    store = open_store(url, create=False)
    try:
        metas = [json.loads(store.get_blob(o.run_id, "reference-meta/m")) for o in (first, second)]
        outs = [arrays.unpack(store.get_blob(o.run_id, "reference/m")) for o in (first, second)]
        inventories = [json.loads(store.get_blob(o.run_id, "model/m")) for o in (first, second)]
    finally:
        store.close()
    assert metas[0]["status"] == metas[1]["status"] == "ok" and metas[1]["cached"] is True
    assert all(np.array_equal(a["y"] if "y" in a else list(a.values())[0], b["y"] if "y" in b else list(b.values())[0])
               for a, b in zip(*outs))
    assert inventories[0] == inventories[1] and inventories[1]["onnx"]["params"] > 0
    # Both records carry the same model facts.
    assert first.report["results"][0]["model"] == second.report["results"][0]["model"]
