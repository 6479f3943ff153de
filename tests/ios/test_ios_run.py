"""iOS targets through the planner and through `harness run`: a Core ML
candidate's op inventory and compute-plan placement in the report, an
ONNX-only candidate shown as needing a Core ML artefact, and a lab without
iOS devices shown as not covered."""

from __future__ import annotations

import json

import pytest

import ioskit

SIM = "com.apple.CoreSimulator.SimRuntime.iOS-17-4"


def _inventory(driver):
    from harness._proto.v1 import agent_pb2 as pb
    from harness.controller.connect import devices_from_describe
    from harness.kernel.wire import DEVICE_STATE_TO_PB

    return devices_from_describe("lab-mac", pb.DescribeResponse(devices=[pb.Device(
        id=f"ios:{d.local_id}", driver="ios", platform=d.platform, facts=dict(d.facts),
        runtimes=[pb.Runtime(name=r.name, version=r.version, eps=list(r.eps), formats=list(r.formats))
                  for r in d.runtimes],
        state=DEVICE_STATE_TO_PB[d.state], state_reason=d.state_reason) for d in driver.devices()]))


def test_planner_gives_onnx_only_candidates_a_needs_artefact_gap(tmp_path):
    import agents.ios
    from harness.config.resolve import PROJECT_PROFILES, load_profile_file
    from harness.controller.planner import Artefact, make_plan
    from harness.kernel.measure.policy import MeasurePolicy

    rec = ioskit.write_recording(tmp_path / "rec", sessions={}, phones=[ioskit.phone()],
                                 sims={SIM: [ioskit.simulator(name="iPhone 13", type_id="iPhone-13")]})
    devices = _inventory(agents.ios.create({"backend": "recorded", "recording": str(rec), **ioskit.SIGNING}))
    profile = load_profile_file(PROJECT_PROFILES / "devices" / "iphone-13.yaml")
    arts = {"teacher": {"onnx": Artefact("teacher", "onnx", "a" * 64, "t.onnx", 10)},
            "student": {"onnx": Artefact("student", "onnx", "b" * 64, "s.onnx", 10),
                        "mlpackage.zip": Artefact("student", "mlpackage.zip", "c" * 64, "s.zip", 10)}}
    plan = make_plan([profile], ["teacher", "student"], arts, devices, MeasurePolicy())
    gaps = {(g.candidate, g.target.ep): g for g in plan.gaps}
    jobs = {(j.candidate, j.target.ep): j for j in plan.jobs}
    for ep in ("all", "cpu_and_ne", "cpu_only"):
        gap = gaps[("teacher", ep)]
        assert gap.kind == "needs_artefact" and "needs a Core ML artefact" in gap.message
        job = jobs[("student", ep)]
        assert job.artefact.format == "mlpackage.zip"
        assert job.eligible == ("lab-mac/ios:device-00008110-001A2B3C4D5E801E",)  # the phone, not the simulator


@pytest.fixture
def ios_agent(tiny, tmp_path):
    """A real agent on loopback whose ios driver replays a recorded Mac."""
    from agents.server import AgentConfig, start

    probes = ioskit.probes(3)  # what `harness run --probes 3` generates for TinyNet's input
    rec = ioskit.write_recording(
        tmp_path / "rec", outputs=list(zip(probes, ioskit.torch_outputs(tiny["model"], probes))),
        sessions={"all": {"load": {"load_ms": 38.0}, "predict_ms": [2.0, 1.5, 1.4, 1.3, 1.2],
                          "compute_plan": ioskit.TINY_PLAN_ALL}})
    running = start(AgentConfig(listen="127.0.0.1:0", drivers=("ios",), cache_dir=str(tmp_path / "agent-cache"),
                                driver_config={"ios": {"backend": "recorded", "recording": str(rec),
                                                       "work_dir": str(tmp_path / "work")}}))
    yield running
    running.stop(grace=1.0)


def test_run_reports_core_ml_op_inventory_plan_placement_and_the_needs_artefact_row(tiny, tmp_path, ios_agent, cli):
    (tmp_path / "lab.yaml").write_text(f"agents:\n  - {{name: lab-mac, address: '{ios_agent.address}'}}\n")
    (tmp_path / "cohort.yaml").write_text(
        "name: mac-lab\n"
        "devices:\n"
        "  - id: mac-m2\n    platform: macos\n    match: {driver: ios, soc: 'Apple M2*'}\n    memory_budget_mb: 4096\n"
        "    targets:\n      - {runtime: coreml, ep: all}\n      - {runtime: onnxruntime, ep: cpu}\n"
        # one session: the recording replays one app session's predictions
        "measure: {warmup_runs: 1, warmup_s: 0, min_runs: 4, min_s: 0, max_s: 10, target_ci: 0, sessions: 1}\n")
    (tmp_path / "candidates.yaml").write_text(
        f"reference: teacher\ncandidates:\n  teacher: {{onnx: {tiny['onnx']}}}\n"
        f"  student: {{coreml: {tiny['mlpackage']}, technique: distillation, from: teacher}}\n")
    r = _run_cli(cli, tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {(x["candidate"], x["runtime"]["name"]): x for x in doc["results"]}

    coreml = rows[("student", "coreml")]
    assert coreml["error"] is None, coreml["error"]
    model = coreml["model"]
    assert {"sha256", "format", "size_bytes", "params", "precision"} <= set(model)
    assert model["format"] == "mlpackage.zip" and model["precision"] == "fp16"
    assert model["params"] == ioskit.param_count(tiny["model"])
    assert {"conv", "relu", "reduce_mean", "linear", "softmax"} <= set(model["op_types"])
    assert coreml["device"]["id"] == "ios:mac" and coreml["device"]["platform"] == "macos"
    assert coreml["runtime"]["version"] == "14.5"
    assert coreml["timing"]["samples_ms"] == [1.5, 1.4, 1.3, 1.2] and coreml["timing"]["load_ms"] == 38.0
    assert coreml["placement"]["source"] == "plan" and coreml["placement"]["fallback_op_types"] == {
        "cast": 1, "softmax": 1}

    gap = rows[("teacher", "coreml")]
    assert gap["error"]["kind"] == "needs_artefact" and "needs a Core ML artefact" in gap["error"]["message"]
    ort = rows[("teacher", "onnxruntime")]
    assert ort["error"] is None and ort["device"]["id"] == "ios:mac" and ort["timing"]["n"] >= 4
    assert rows[("student", "onnxruntime")]["error"]["kind"] == "needs_artefact"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "needs a Core ML artefact" in md


def _run_cli(cli, tmp_path):
    return cli("run", "--cohort", tmp_path / "cohort.yaml", "--candidates", tmp_path / "candidates.yaml",
               "--lab", tmp_path / "lab.yaml", "--store", tmp_path / "r.sqlite", "--out", tmp_path / "out",
               "--probes", "3", cwd=tmp_path, timeout=300)


def test_lab_without_ios_devices_shows_ios_profiles_as_not_covered(tiny, tmp_path, cli):
    (tmp_path / "profiles" / "cohorts").mkdir(parents=True)
    (tmp_path / "profiles" / "cohorts" / "phones.yaml").write_text(
        "name: phones\ndevices: [iphone-13]\n"
        "measure: {warmup_runs: 1, warmup_s: 0, min_runs: 3, min_s: 0, max_s: 5, target_ci: 0}\n")
    r = cli("run", "--cohort", tmp_path / "profiles" / "cohorts" / "phones.yaml", "--model", f"teacher={tiny['onnx']}",
            "--drivers", "host", "--store", tmp_path / "r.sqlite", "--out", tmp_path / "out", cwd=tmp_path,
            timeout=300)
    assert r.returncode in (0, 1), r.stderr  # a run whose every row is a gap still reports
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(doc["results"]) == 3  # one row per iphone-13 target, none lost
    for row in doc["results"]:
        assert row["device"]["profile"] == "iphone-13" and row["device"]["platform"] == "ios"
        assert row["error"]["kind"] == "not_covered"
        assert "no device on any agent matches profile iphone-13" in row["error"]["message"]
