"""Deadlines, draining, keepalive, queue limits, auth and agent config errors."""

import hashlib
import shutil
import signal
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import modelkit
from agents.server import AgentConfig, start
from harness._proto.v1 import agent_pb2 as pb
from harness.controller import client as client_mod
from harness.controller.client import AgentClient, AgentError, Credentials
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy
from labkit import harness_cli


class Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
               grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self):
        self.calls = []

    def _rec(self, details):
        self.calls.append((details.method, details.timeout))

    def intercept_unary_unary(self, cont, details, request):
        self._rec(details)
        return cont(details, request)

    def intercept_unary_stream(self, cont, details, request):
        self._rec(details)
        return cont(details, request)

    def intercept_stream_unary(self, cont, details, it):
        self._rec(details)
        return cont(details, it)

    def intercept_stream_stream(self, cont, details, it):
        self._rec(details)
        return cont(details, it)


def test_every_rpc_of_a_run_carries_a_deadline(tmp_path, quick_cohort, monkeypatch):
    from harness import api

    rec = Recorder()
    monkeypatch.setattr(client_mod, "DEFAULT_INTERCEPTORS", [rec])
    monkeypatch.chdir(tmp_path)
    # A model no agent cache can hold yet, so the upload path runs too.
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1, seed=time.time_ns() % 2**32)
    out = api.run_cohort(api.RunRequest(cohort=str(quick_cohort), models=[f"m={model}"], drivers=["host"]))
    assert out.report["results"][0]["error"] is None
    methods = {m.rsplit("/", 1)[-1] for m, _ in rec.calls}
    assert {"Describe", "FindMissingModels", "UploadModel", "Run"} <= methods
    missing = [m for m, t in rec.calls if t is None]
    assert missing == [], f"calls without a deadline: {missing}"


def _job(dev_id, digest, job_id, min_s=0.0, timeout=60):
    return pb.Job(job_id=job_id, device_id=dev_id, models=[pb.ModelRef(digest=digest, format="onnx")],
                  target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu"),
                  measure=wire.policy_to_pb(MeasurePolicy(warmup_runs=1, warmup_s=0, min_runs=10, min_s=min_s,
                                                          max_s=min_s + 30, target_ci=0)),
                  probes=[wire.tensors_to_pb({"x": np.ones((1, 16), np.float32)})], timeout_s=timeout)


def _upload(c, path):
    d = hashlib.sha256(path.read_bytes()).hexdigest()
    c.ensure_models([(path, d, "onnx")])
    return d


def test_draining_agent_reports_not_serving_and_refuses_jobs(tmp_path):
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "c")))
    c = AgentClient("t", agent.address)
    try:
        digest = _upload(c, modelkit.mlp(tmp_path / "m.onnx", batch=1))
        dev = c.describe().devices[0].id
        box = {}
        t = threading.Thread(target=lambda: box.update(r=c.run(_job(dev, digest, "long", min_s=20), lambda e: None, 60)))
        t.start()
        time.sleep(1.0)
        agent.drain(grace=10)
        health = health_pb2_grpc.HealthStub(c.channel)
        st = health.Check(health_pb2.HealthCheckRequest(service="harness.v1.Agent"), timeout=5).status
        assert st == health_pb2.HealthCheckResponse.NOT_SERVING
        t.join(30)
        assert box["r"].error.kind == "cancelled"
        with pytest.raises(grpc.RpcError) as err:
            list(c.stub.Run(pb.RunRequest(job=_job(dev, digest, "late")), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "draining" in err.value.details()
    finally:
        c.close()
        agent.stop(1)


def test_keepalive_notices_a_frozen_agent(tmp_path, spawn_agent):
    a = spawn_agent("frozen")
    c = AgentClient("frozen", a.address, keepalive_s=1.0, keepalive_timeout_s=1.0, connect_timeout_s=1.0,
                    sleep=lambda s: None)
    try:
        digest = _upload(c, modelkit.mlp(tmp_path / "m.onnx", batch=1))
        dev = c.describe().devices[0].id
        box = {}

        def go():
            try:
                c.run(_job(dev, digest, "k.1", min_s=60, timeout=300), lambda e: None, 300)
            except AgentError as err:
                box["err"] = err

        t = threading.Thread(target=go)
        t.start()
        time.sleep(1.5)
        a.proc.send_signal(signal.SIGSTOP)
        t.join(120)
        assert not t.is_alive(), "a frozen agent was not noticed"
        assert box["err"].code == grpc.StatusCode.UNAVAILABLE
    finally:
        a.proc.send_signal(signal.SIGCONT)
        c.close()


def test_queue_length_limit(tmp_path):
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "c"), max_queue=1))
    c = AgentClient("t", agent.address)
    try:
        digest = _upload(c, modelkit.mlp(tmp_path / "m.onnx", batch=1))
        dev = c.describe().devices[0].id
        threads = [threading.Thread(target=lambda i=i: c.run(_job(dev, digest, f"q{i}", min_s=2), lambda e: None, 60))
                   for i in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.5)
        with pytest.raises(AgentError) as err:
            c.run(_job(dev, digest, "q-over"), lambda e: None, 30)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 1" in str(err.value)
        for t in threads:
            t.join(60)
    finally:
        c.close()
        agent.stop(1)


def test_token_auth_in_process(tmp_path):
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "c"), token="tok"))
    try:
        for creds, ok in ((Credentials(), False), (Credentials(token="nope"), False), (Credentials(token="tok"), True)):
            c = AgentClient("t", agent.address, creds, sleep=lambda s: None)
            if ok:
                assert c.describe().devices
            else:
                with pytest.raises(AgentError) as err:
                    c.describe()
                assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
                assert "token" in str(err.value)
            health = health_pb2_grpc.HealthStub(c.channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1  # open to probes
            c.close()
    finally:
        agent.stop(1)


def _openssl_ca(tmp_path):
    ossl = shutil.which("openssl")
    if not ossl:
        pytest.skip("openssl is needed to make the test CA and certificates")

    def run(*args):
        subprocess.run([ossl, *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=harness-test-ca")
    for name, cn, san in (("agent", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                          ("ctl", "controller", "subjectAltName=DNS:controller")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        (tmp_path / f"{name}.ext").write_text(san + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return tmp_path


def test_mutual_tls(tmp_path, quick_cohort):
    d = _openssl_ca(tmp_path / "pki") if (tmp_path / "pki").mkdir() is None else None
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "c"),
                              tls={"cert": str(d / "agent.pem"), "key": str(d / "agent.key"),
                                   "client_ca": str(d / "ca.pem")}))
    try:
        good = AgentClient("t", agent.address, Credentials(ca=(d / "ca.pem").read_bytes(),
                                                           cert=(d / "ctl.pem").read_bytes(),
                                                           key=(d / "ctl.key").read_bytes()))
        assert good.describe().devices
        good.close()
        anon = AgentClient("t", agent.address, Credentials(ca=(d / "ca.pem").read_bytes()), sleep=lambda s: None)
        with pytest.raises(AgentError):
            anon.wait_ready(timeout=3)
            anon.describe()
        anon.close()
        lab = tmp_path / "lab.yaml"
        lab.write_text(f"agents:\n  - {{name: secure, address: '{agent.address}', "
                       f"tls: {{ca: pki/ca.pem, cert: pki/ctl.pem, key: pki/ctl.key}}}}\n")
        m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
        p = harness_cli("run", "--cohort", quick_cohort, "--model", f"m={m}", "--lab", lab, "-q", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    finally:
        agent.stop(1)


def test_agent_warns_when_exposed_without_auth(tmp_path):
    exe = shutil.which("harness", path=str(__import__("pathlib").Path(__import__("sys").executable).parent))
    p = subprocess.Popen([exe, "agent", "serve", "--listen", "0.0.0.0:0", "--port-file", str(tmp_path / "port"),
                          "--cache-dir", str(tmp_path / "c")], stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while not (tmp_path / "port").exists() and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert "without a token or TLS" in err


@pytest.mark.parametrize("text,expect", [
    ("listen: '127.0.0.1:0'\ndrivers: [host]\nport: 3\n", "port: unknown key"),
    ("drivers: host\n", "drivers: expected a list"),
    ("listen: [oops\n", "invalid YAML"),
])
def test_agent_config_errors(tmp_path, text, expect):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(text)
    p = harness_cli("agent", "serve", "--config", cfg, cwd=tmp_path, timeout=30)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and expect in p.stderr and str(cfg) in p.stderr


def test_unknown_driver_is_one_line(tmp_path):
    p = harness_cli("agent", "serve", "--listen", "127.0.0.1:0", "--drivers", "host,warp", cwd=tmp_path, timeout=30)
    assert p.returncode == 2 and "unknown driver 'warp'" in p.stderr
