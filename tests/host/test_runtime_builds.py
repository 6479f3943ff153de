"""ONNX Runtime builds and versions side by side on one host: the runtime
environments, how a target picks one, and one run over three of them."""

import json
import os
import sys
from pathlib import Path

import pytest

import hostkit
from labkit import harness_cli


def test_one_run_measures_three_builds_each_a_coverage_column(tmp_path, openvino_env, older_env):
    import onnxruntime as own

    model = hostkit.partly_openvino(tmp_path / "m.onnx")
    cohort = hostkit.cohort(tmp_path / "profiles", [
        "{runtime: onnxruntime, ep: cpu, options: {intra_op_threads: 1}}",  # harness's own: the default
        f"{{runtime: onnxruntime, version: '{older_env.version}', ep: cpu, options: {{intra_op_threads: 1}}}}",
        "{runtime: onnxruntime, ep: openvino, options: {intra_op_threads: 1}}",
    ])
    out = tmp_path / "out"
    p = harness_cli("run", "--cohort", cohort, "--model", f"m={model}", "--out", out, "--drivers", "host",
                    "--warn-only", cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((out / "report.json").read_text())
    ran = {(r["runtime"]["build"], r["runtime"]["version"], r["runtime"]["ep"]): r for r in doc["results"]}
    assert set(ran) == {("onnxruntime", own.__version__, "cpu"), ("onnxruntime", older_env.version, "cpu"),
                        ("onnxruntime-openvino", openvino_env.version, "openvino")}
    for r in ran.values():
        assert r["error"] is None and r["timing"]["n"] >= 20
        assert r["placement"]["nodes_total"] == 5
    # 1.20 has no graph-assignment API: its verbose log (every node listed) counts.
    older = ran[("onnxruntime", older_env.version, "cpu")]["placement"]
    assert older["source"] == "verbose log + profile" and older["nodes_by_ep"] == {"cpu": 5}
    # With the API, a CPU target whose measuring session put every node on the
    # CPU EP needs no second pass: all of its kernel time is the CPU's.
    mine = ran[("onnxruntime", own.__version__, "cpu")]
    assert mine["placement"]["source"] == "runtime API" and mine["placement"]["time_share_by_ep"] == {"cpu": 1.0}
    # Each build's runner forked from a template of its own environment.
    assert {r["details"]["runner_start"] for r in ran.values()} == {"fork"}
    assert len({r["details"]["template_pid"] for r in ran.values()}) == 3
    [cov] = doc["coverage"].values()
    assert set(cov["columns"]) == {f"onnxruntime {own.__version__}", f"onnxruntime {older_env.version}",
                                   f"onnxruntime-openvino {openvino_env.version}"}
    cells = cov["cells"]["host"]
    assert cells[f"onnxruntime-openvino {openvino_env.version}"]["status"] == "fallback"
    assert cells[f"onnxruntime {older_env.version}"]["status"] == "ok"


def test_harness_devices_lists_every_build(tmp_path, openvino_env, older_env):
    p = harness_cli("devices", "--drivers", "host", cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"onnxruntime-openvino {openvino_env.version} [openvino cpu]" in p.stdout
    assert f"onnxruntime {older_env.version} [cpu]" in p.stdout


# -- choosing a build -------------------------------------------------------------------
def _builds():
    from agents.host.targets import Build

    return [Build("1.32.0", "onnxruntime", ("cpu",), None),
            Build("1.20.1", "onnxruntime", ("cpu",), Path("/e/a/bin/python")),
            Build("1.24.1", "onnxruntime", ("cpu",), Path("/e/b/bin/python")),
            Build("1.24.1", "onnxruntime-openvino", ("openvino", "cpu"), Path("/e/c/bin/python"))]


@pytest.mark.parametrize("runtime,version,ep,want", [
    ("onnxruntime", "", "cpu", ("onnxruntime", "1.32.0")),  # harness's own is the default
    ("onnxruntime", "1.20", "cpu", ("onnxruntime", "1.20.1")),
    ("onnxruntime", "1.24.1", "cpu", ("onnxruntime", "1.24.1")),  # the plain build before an accelerator one
    ("onnxruntime", "", "openvino", ("onnxruntime-openvino", "1.24.1")),
    ("onnxruntime-openvino", "1.24", "cpu", ("onnxruntime-openvino", "1.24.1")),  # a build named as the runtime
])
def test_a_target_picks_a_build(runtime, version, ep, want):
    from agents.host.targets import choose

    build, kind, why = choose(_builds(), runtime, version, ep)
    assert (build.build, build.version) == want and kind == why == ""


@pytest.mark.parametrize("runtime,version,ep,kind,words", [
    ("onnxruntime", "1.19", "cpu", "unsupported_version", "harness runtime install onnxruntime==1.19"),
    ("onnxruntime", "", "cuda", "unsupported_ep", "harness runtime install onnxruntime-gpu"),
    ("onnxruntime", "1.20", "openvino", "unsupported_ep", "onnxruntime 1.20.1 [cpu]"),
    ("onnxruntime-web", "", "wasm", "unsupported_target", "not 'onnxruntime-web'"),
])
def test_no_build_qualifies_says_why(runtime, version, ep, kind, words):
    from agents.host.targets import choose

    build, got, why = choose(_builds(), runtime, version, ep)
    assert build is None and got == kind and words in why


# -- the environments ---------------------------------------------------------------------
def _fake_env(root: Path, dist: str, version: str, providers=("CPUExecutionProvider",)) -> Path:
    d = root / f"{dist}-{version}"
    (d / "bin").mkdir(parents=True)
    os.symlink(sys.executable, d / "bin" / "python")
    (d / "installed.json").write_text(json.dumps({"dist": dist, "version": version, "providers": list(providers)}))
    return d


def test_cache_lists_complete_environments_and_removes_by_spec(tmp_path):
    from agents.host import runtimes as rt

    _fake_env(tmp_path, "onnxruntime", "1.20.1")
    _fake_env(tmp_path, "onnxruntime", "1.22.0")
    _fake_env(tmp_path, "onnxruntime-openvino", "1.24.1", ("OpenVINOExecutionProvider", "CPUExecutionProvider"))
    (tmp_path / "onnxruntime-1.23.0" / "bin").mkdir(parents=True)  # no marker: an install cut short
    (tmp_path / ".tmp-onnxruntime-x").mkdir()
    have = rt.installed(tmp_path)
    assert [(e.dist, e.version) for e in have] == [("onnxruntime", "1.20.1"), ("onnxruntime", "1.22.0"),
                                                   ("onnxruntime-openvino", "1.24.1")]
    assert rt.find(rt.parse_spec("onnxruntime==1.2"), tmp_path) is None  # 1.2 is not a prefix of 1.20.1
    assert rt.find(rt.parse_spec("onnxruntime"), tmp_path).version == "1.22.0"
    gone = rt.remove(rt.parse_spec("onnxruntime"), tmp_path)
    assert [e.version for e in gone] == ["1.20.1", "1.22.0"]
    assert [e.dist for e in rt.installed(tmp_path)] == ["onnxruntime-openvino"]


@pytest.mark.parametrize("text,words", [
    ("numpy", "expected an ONNX Runtime distribution"),
    ("onnxruntime==1.20;rm -rf /", "expected a release such as 1.20.1"),
    ("../onnxruntime", "expected an ONNX Runtime distribution"),
    ("onnxruntime==latest", "expected a release such as 1.20.1"),
])
def test_spec_refuses_anything_but_an_onnx_runtime_build(text, words):
    from agents.host import runtimes as rt

    with pytest.raises(rt.RuntimeEnvError, match=words):
        rt.parse_spec(text)


def test_runtime_command_lists_and_refuses_in_one_line(tmp_path):
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    _fake_env(tmp_path / "cache" / "ort-python", "onnxruntime", "1.20.1")
    import subprocess

    exe = Path(sys.executable).parent / "harness"
    run = lambda *a: subprocess.run([str(exe), "runtime", *a], capture_output=True, text=True, env=env, timeout=60)
    p = run("list")
    assert p.returncode == 0 and "onnxruntime 1.20.1 [cpu]" in p.stdout and "(default)" in p.stdout
    p = run("install", "tensorflow==2.0")
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "tensorflow==2.0" in p.stderr
    p = run("remove", "onnxruntime==1.19")
    assert p.returncode == 1 and "no such environment installed" in p.stderr
    p = run("remove", "onnxruntime==1.20.1")
    assert p.returncode == 0 and "removed onnxruntime 1.20.1 [cpu]" in p.stdout
    assert "none; add one" in run("list").stdout
