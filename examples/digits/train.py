"""Teacher, distilled student and quantised variants for the digits demo.

Needs the `examples` extra (PyTorch and scikit-learn); the artefacts it
writes are committed, so running the demo does not. From the repository root:

    pip install -e '.[examples]'        # or: pip install torch==2.13.0 scikit-learn
    python examples/digits/train.py

Data: scikit-learn's bundled digits set (1,797 8x8 greyscale images, 10
classes), pixels scaled from 0..16 to 0..1. A stratified 80/20 split; the
20 % held out is never trained on, and `val.npz` is 64 of those samples.

The student follows the usual distillation procedure: its size is chosen
before training (4.5 % of the teacher's parameters), it is trained on
    loss = 0.5 * cross_entropy(student, labels) + 0.5 * T^2 * KL(teacher_T || student_T)
with T = 4 (softmax of logits / T; the T^2 factor restores the gradient scale
the temperature removes), and it is validated at three points: against the
teacher (top-1 agreement), against the labels (accuracy), and against the
deployment runtime (ONNX Runtime output vs PyTorch output).

Everything is seeded and runs single-threaded with deterministic kernels, so
the same PyTorch version reproduces the committed files' numbers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
T = 4.0            # distillation temperature (the usual range is 2..5)
ALPHA = 0.5        # weight of the task loss; 1 - ALPHA weighs the distillation loss
VAL_SAMPLES = 64   # the harness sends at most 64 probes per job (harness.kernel.limits.MAX_PROBES)
OPSET = 17


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]   # N x 1 x 8 x 8, 0..1
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=SEED)
    val_idx, _ = train_test_split(np.arange(len(y_te)), train_size=VAL_SAMPLES, stratify=y_te, random_state=SEED)
    val_idx = np.sort(val_idx)
    return (x_tr, y_tr), (x_te, y_te), (x_te[val_idx], y_te[val_idx])


def teacher_net():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def student_net():
    import torch.nn as nn

    # Same operator set as the teacher (every runtime in the cohort runs
    # both), a quarter of the channels and no hidden dense layer.
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def batches(n: int, size: int, gen):
    import torch

    order = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield order[i:i + size]


def train(net, x, y, epochs: int, lr: float, teacher=None):
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        soft = F.softmax(teacher(xt) / T, dim=1) if teacher is not None else None
    for _ in range(epochs):
        net.train()
        for idx in batches(len(yt), 64, gen):
            logits = net(xt[idx])
            loss = F.cross_entropy(logits, yt[idx])
            if soft is not None:
                kl = F.kl_div(F.log_softmax(logits / T, dim=1), soft[idx], reduction="batchmean")
                loss = ALPHA * loss + (1 - ALPHA) * T * T * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    return net


def logits_of(net, x):
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def export(net, path: Path) -> None:
    import warnings

    import torch

    # Batch fixed at 1: one sample per inference is what an edge app runs,
    # and a fixed shape lets `harness run` cut val.npz into probes without a
    # --dim flag. TorchScript exporter: it needs no extra package (the newer
    # exporter needs onnxscript) and emits only Conv/Relu/MaxPool/Flatten/Gemm,
    # which every ONNX Runtime EP in the cohort, ORT Web's wasm included, runs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["x"], output_names=["logits"],
                          opset_version=OPSET, dynamo=False)


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


CANDIDATES_HEAD = """\
# The digits demo: a teacher CNN, a student distilled from it, and the
# teacher's quantised variants (added by `harness quantize`). Made by train.py.
reference: teacher
eval: val.npz          # 64 held-out samples with labels: parity and accuracy
candidates:
  teacher: {onnx: teacher.onnx, technique: baseline, description: "CNN, 2 conv + 2 dense"}
  student: {onnx: student.onnx, technique: distillation, from: teacher, description: "distilled (T=4), 2 small conv + 1 dense"}
"""


def main() -> None:
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    (x_tr, y_tr), (x_te, y_te), (x_val, y_val) = data()

    teacher = train(teacher_net(), x_tr, y_tr, epochs=40, lr=1e-3)
    torch.manual_seed(SEED)
    student = train(student_net(), x_tr, y_tr, epochs=120, lr=3e-3, teacher=teacher)

    np.savez_compressed(HERE / "val.npz", x=x_val, labels=y_val)
    rows = []
    t_te = logits_of(teacher, x_te)
    for name, net in (("teacher", teacher), ("student", student)):
        path = HERE / f"{name}.onnx"
        export(net, path)
        torch_te = logits_of(net, x_te)
        ort_te = onnx_logits(path, x_te)
        ort_val = onnx_logits(path, x_val)
        rows.append((name, params(net), path.stat().st_size, (torch_te.argmax(1) == y_te).mean(),
                     (ort_te.argmax(1) == y_te).mean(), (ort_val.argmax(1) == y_val).mean(),
                     (torch_te.argmax(1) == t_te.argmax(1)).mean(), float(np.abs(torch_te - ort_te).max())))

    (HERE / "candidates.yaml").write_text(CANDIDATES_HEAD, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "harness", "quantize", str(HERE / "teacher.onnx"),
                    "--candidates", str(HERE / "candidates.yaml"), "--name", "teacher"], check=True)

    print(f"\nheld-out split: {len(y_te)} samples (val.npz: {len(y_val)} of them); T = {T:g}")
    print("accuracy on the held-out split (PyTorch, ONNX Runtime) and on val.npz (ONNX Runtime); top-1 agreement "
          "with the teacher on the held-out split; largest |ONNX Runtime - PyTorch| logit difference")
    print(f"{'model':<8} {'params':>7} {'onnx bytes':>10} {'acc torch':>9} {'acc onnx':>8} {'acc val':>7} "
          f"{'agree':>6} {'max|d|':>9}")
    for name, n, size, acc_t, acc_o, acc_v, agree, diff in rows:
        print(f"{name:<8} {n:>7} {size:>10} {acc_t:>9.3f} {acc_o:>8.3f} {acc_v:>7.3f} {agree:>6.3f} {diff:>9.2e}")


if __name__ == "__main__":
    main()
