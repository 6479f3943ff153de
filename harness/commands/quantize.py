"""`harness quantize MODEL.onnx`: INT8 (dynamic, static QDQ) and FP16
candidates made with ONNX Runtime's tools, optionally recorded in a
candidates file. The logic lives in harness.quantize."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)


def quantize(
    model: Path = typer.Argument(..., metavar="MODEL.onnx", help="Float32 ONNX model to quantise."),
    eval_set: Optional[Path] = typer.Option(
        None, "--eval", help="Eval set (.npz, one array per model input, optional labels): calibrates the "
                             "static variant and checks every variant. Default: the candidates file's eval."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the variants (default: the model's)."),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma-separated: dynamic,static,fp16 (default: "
                                                                    "all three with an eval set, else dynamic,fp16)."),
    candidates: Optional[Path] = typer.Option(
        None, "--candidates", help="Candidates file to add the variants to (created if missing)."),
    name: Optional[str] = typer.Option(None, "--name", help="The model's candidate name, BASE; variants become "
                                                           "BASE-int8-dynamic, BASE-int8-static, BASE-fp16 (default: the file stem)."),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="INT8 weight scales per output channel or per tensor."),
    activation_type: str = typer.Option("uint8", "--activation-type", help="Static activations: uint8 (ONNX Runtime's CPU default) or int8."),
    reduce_range: bool = typer.Option(False, "--reduce-range", help="7-bit weights (for x86 CPUs without VNNI)."),
    calibrate: str = typer.Option("minmax", "--calibrate", help="Calibration method: minmax, entropy or percentile."),
    preprocess: bool = typer.Option(True, "--preprocess/--no-preprocess", help="Run ONNX Runtime's quant_pre_process first."),
):
    """Make quantised candidates of an ONNX model with ONNX Runtime's own tools."""
    from harness import api
    from harness.cli_render import guarded
    from harness.quantize import Settings, parse_variants

    settings = Settings(per_channel=per_channel, activation_type=activation_type.lower(),
                        reduce_range=reduce_range, calibrate=calibrate.lower(), preprocess=preprocess)
    outcome = guarded(lambda: api.quantize(model, variants=parse_variants(variants) if variants else None,
                                           eval_path=eval_set,
                                           out_dir=out_dir, settings=settings, candidates=candidates, name=name))
    _print(outcome)


def _print(o) -> None:
    kb = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
    typer.echo(f"{o.source}: {kb(o.source_bytes)}"
               + ("; pre-processed with quant_pre_process" if o.preprocessed else ""))
    for note in o.notes:
        typer.echo(f"  note: {note}")
    for v in o.variants:
        line = f"  {v.kind:<8} {v.path}  {kb(v.size_bytes)} ({v.size_bytes / max(o.source_bytes, 1):.2f}x)"
        if v.check:
            line += f"  vs float on {v.check.samples} eval batches: max|d| {v.check.max_abs:.3g}, rel L2 {v.check.rel_l2:.3g}"
            if v.check.top1_agreement is not None:
                line += f", top-1 agreement {v.check.top1_agreement:.1%}"
            if v.check.rel_l2_unfused is not None:
                line += f" (unfused QDQ: rel L2 {v.check.rel_l2_unfused:.3g})"
        typer.echo(line)
    if o.manifest:
        names = ", ".join(v.candidate for v in o.variants if v.candidate)
        typer.echo(f"{o.manifest}: candidates {names}"
                   + ("" if o.manifest_layout_kept else " (file rewritten from its content: comments were lost)"))
