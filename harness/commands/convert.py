"""`harness convert coreml`: a PyTorch model to Core ML, added to a
candidates file (harness.coreml_convert holds the logic)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app) -> None:
    group = typer.Typer(no_args_is_help=True, help="Convert models for runtimes that need their own format.")
    group.command("coreml")(coreml)
    app.add_typer(group, name="convert")


def coreml(
    model: Path = typer.Argument(..., help="TorchScript (torch.jit.save) or exported program (torch.export.save, .pt2)."),
    out: Path = typer.Option(..., "--out", "-o", help="X.mlpackage (ML program) or X.mlmodel (neural network)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp16 | fp32 compute precision "
                                            "(default fp16 for .mlpackage, fp32 for .mlmodel)."),
    target: Optional[str] = typer.Option(None, "--minimum-deployment-target",
                                         help="iOS15, iOS16, iOS17, iOS18, ... (default: coremltools' choice)."),
    inputs: List[str] = typer.Option([], "--input", help="NAME=1x3x224x224[:dtype]; repeatable. Required for "
                                                         "TorchScript, which carries no shapes."),
    outputs: List[str] = typer.Option([], "--output", help="Output NAME, in order; repeatable (name them as "
                                                           "the ONNX model does, so parity lines up)."),
    io_dtype: str = typer.Option("fp32", "--io-dtype", help="fp32 | fp16: element type of inputs and outputs."),
    candidates: Optional[Path] = typer.Option(None, "--candidates", help="Candidates file to add the result to."),
    name: Optional[str] = typer.Option(None, "--name", help="Candidate to set coreml: on (created if missing)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
):
    """Convert a PyTorch model to Core ML with coremltools."""
    from harness import api
    from harness.cli_render import guarded

    done = guarded(lambda: api.convert_coreml(model, out, precision, target, inputs, outputs, io_dtype,
                                              candidates, name, force))
    for note in done.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {done.out}")
    for line in done.summary:
        typer.echo(f"  {line}")
    if done.candidate_created is not None:
        verb = "added candidate" if done.candidate_created else "set coreml: on candidate"
        typer.echo(f"{verb} {name} in {candidates}")
