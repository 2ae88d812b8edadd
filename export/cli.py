"""`edgeecg export`: deployable models from a trained run, each checked before it is written."""

from __future__ import annotations

from pathlib import Path

import click

from edgeecg.formats import ONNX_SUFFIX

from .engines import run_engines_from_onnx
from .options import ExportOptions


def _parts(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@click.command("export")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="output folder [default: SOURCE's run folder/export]")
@click.option("--name", help="file name stem [default: the model contract's name]")
@click.option("--opset", type=click.IntRange(min=14), default=17, show_default=True,
              help="ONNX opset; 16 for TensorRT 8.5 (JetPack 5), whose parser lacks opset 17's LayerNormalization")
@click.option("--verify-data", type=click.Path(exists=True, path_type=Path),
              help="folder or CSV of real scans for the parity checks [default: scans from the calibration folder]")
@click.option("--verify-count", type=click.IntRange(min=1), default=8, show_default=True,
              help="scans used for the parity checks")
@click.option("--fp16", "fp16_engine", is_flag=True,
              help="with --trt: build an FP16 engine (the default engine when --int8 is not given); "
                   "the FP16 ONNX model is always written")
@click.option("--int8", is_flag=True, help="calibrated INT8 Q/DQ model(s); with --trt also an INT8 engine")
@click.option("--int8-target", "int8_targets", type=click.Choice(["cpu", "tensorrt"]), multiple=True,
              help="INT8 flavour: cpu (uint8 activations, ONNX Runtime CPU) [default], tensorrt (symmetric int8; "
                   "implied by --trt); repeatable")
@click.option("--calib", type=click.Path(path_type=Path),
              help="held-out scans for INT8 calibration [default: ./calib_data, else calib_data/ of the repository]")
@click.option("--calib-max", type=click.IntRange(min=1), default=500, show_default=True,
              help="at most this many calibration scans (spread over the folder)")
@click.option("--calib-method", type=click.Choice(["auto", "entropy", "percentile", "minmax"]), default="auto",
              show_default=True, help="activation range calibration; auto tries all and keeps the closest to FP32")
@click.option("--int8-exclude", callback=_parts, default="",
              help="comma-separated model parts kept in FP32, e.g. attention,classifier; or auto: chosen by the "
                   "sensitivity sweep until INT8 agrees with FP32 on >= 98 %% of the checking scans")
@click.option("--int8-sweep", is_flag=True,
              help="print a per-part sensitivity sweep: each part kept in FP32 in turn, against FP32 "
                   "(implied by --int8-exclude auto; image models)")
@click.option("--eval-data", type=click.Path(exists=True, path_type=Path),
              help="labelled folder or CSV for FP32-vs-INT8 accuracy [default: calib_data/heldout_eval.csv]")
@click.option("--accept-int8-miss", is_flag=True,
              help="exit 0 even when an INT8 model misses its targets against FP32 (>= 98 %% top-1 agreement, "
                   "<= 1 pp accuracy drop); it is written and reported as FAILED either way")
@click.option("--trt", is_flag=True, help="also build TensorRT engine(s) on this machine's GPU")
@click.option("--trt-calibrator", type=click.Choice(["explicit", "legacy"]), default="explicit", show_default=True,
              help="INT8 engines: from the Q/DQ model, or legacy entropy calibration (TensorRT 8.x/10.x)")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="largest batch the engines accept")
@click.option("--workspace", "workspace_gib", type=click.FloatRange(min=0.125), default=2.0, show_default=True,
              help="TensorRT builder workspace (GiB)")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path),
              help="TensorRT timing cache, read and updated [default: OUT/trt-timing.cache]")
@click.option("--dla", type=click.IntRange(min=0), help="Jetson: DLA core for the engine, GPU fallback (TensorRT 10)")
def export(**options) -> None:
    """ONNX FP32 + FP16, INT8 and TensorRT engines from a run folder or checkpoint (SOURCE).

    The FP32 model is written only if ONNX Runtime reproduces PyTorch on real scans
    (max |delta logit| <= 1e-4, same top-1); every artifact carries the model contract.
    With an exported FP32 model as SOURCE (model.onnx) and --trt, only the TensorRT
    engines are built, from it and its siblings: no PyTorch needed (a Jetson).
    """
    export_options = ExportOptions(**options)
    if export_options.source.suffix.lower() == ONNX_SUFFIX:
        run_engines_from_onnx(export_options)
        return
    from .pipeline import run_export  # PyTorch only for a training run as SOURCE
    from .signal_export import export_signal, is_signal_run

    if is_signal_run(export_options.source):
        export_signal(export_options)
        return
    run_export(export_options)
