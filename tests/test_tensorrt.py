"""TensorRT engines: device/version checks from the sidecar (no TensorRT needed) and, on a GPU, real builds."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeecg import trt_backend
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.trt_backend import REBUILD_HINT, TensorRTBackend, check_engine_compatible, sidecar_path

CLASSES = ["abnormal_heartbeat", "history_of_mi", "myocardial_infarction", "normal"]
GTX_1660 = {"gpu_name": "NVIDIA GeForce GTX 1660", "compute_capability": "7.5", "tensorrt_version": "10.3.0"}


def _sidecar(**overrides) -> dict:
    contract = ModelContract(classes=CLASSES, input_size=64, precision="fp16")
    return {**GTX_1660, "precision": "fp16", "max_batch": 4, "dla_core": None, "contract": asdict(contract),
            **overrides}


def test_an_engine_built_here_is_accepted():
    check_engine_compatible(_sidecar(), "10.3.0", "NVIDIA GeForce GTX 1660", "7.5")


@pytest.mark.parametrize("trt_version, gpu, capability", [
    ("10.3.0", "Orin", "8.7"),  # another GPU
    ("10.3.0", "NVIDIA GeForce GTX 1660 SUPER", "7.5"),  # same architecture, another card
    ("10.3.0", "NVIDIA GeForce GTX 1660", "8.6"),  # another compute capability
    ("8.5.2.2", "NVIDIA GeForce GTX 1660", "7.5"),  # another TensorRT
])
def test_an_engine_built_elsewhere_is_refused_with_the_fix(trt_version, gpu, capability):
    with pytest.raises(EdgeECGError) as excinfo:
        check_engine_compatible(_sidecar(), trt_version, gpu, capability, "model-fp16.engine")
    message = str(excinfo.value)
    assert REBUILD_HINT == "rebuild with edgeecg export --trt on this device" and message.endswith(REBUILD_HINT)
    assert "model-fp16.engine" in message and "GTX 1660 (compute capability 7.5) with TensorRT 10.3.0" in message
    assert f"{gpu} (compute capability {capability}) with TensorRT {trt_version}" in message


def _stand_in_engine(folder: Path, sidecar: dict | None) -> Path:
    engine = folder / "model-fp16.engine"
    engine.write_bytes(b"not a real engine")
    if sidecar is not None:
        sidecar_path(engine).write_text(json.dumps(sidecar))
    return engine


def test_an_engine_without_its_sidecar_is_refused(tmp_path):
    engine = _stand_in_engine(tmp_path, None)
    with pytest.raises(EdgeECGError, match=f"no sidecar model-fp16.engine.json.*{REBUILD_HINT}"):
        TensorRTBackend(engine)


def test_a_foreign_engine_is_refused_before_tensorrt_reads_it(tmp_path, monkeypatch):
    """The sidecar check runs before deserialisation: TensorRT never sees a foreign engine."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Runtime:
        def __init__(self, logger):
            raise AssertionError("the engine must not be deserialised")

    fake_trt = SimpleNamespace(__version__="10.3.0", Runtime=Runtime, Logger=Logger)
    fake_cuda = SimpleNamespace(device=lambda: ("Orin", "8.7"))
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake_trt)
    monkeypatch.setattr(trt_backend, "cuda_api", lambda: fake_cuda)
    engine = _stand_in_engine(tmp_path, _sidecar())
    with pytest.raises(EdgeECGError, match=f"built for NVIDIA GeForce GTX 1660.*this device is Orin.*{REBUILD_HINT}"):
        TensorRTBackend(engine)


@pytest.fixture(scope="module")
def gpu_with_tensorrt():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed: engine builds need an NVIDIA GPU with TensorRT")
    try:
        return trt_backend.cuda_device()
    except EdgeECGError as exc:
        pytest.skip(f"TensorRT is installed but there is no usable GPU: {exc}")


@pytest.fixture(scope="module")
def trt_export(gpu_with_tensorrt, tmp_path_factory, mendeley_dir):
    """The tiny model exported with FP16 and INT8 (explicit Q/DQ) engines on this GPU."""
    import shutil

    import torch

    from edgeecg.export.options import ExportOptions
    from edgeecg.export.pipeline import run_export
    from edgeecg.train.checkpoint import save_checkpoint
    from edgeecg.train.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(num_classes=4, trunk="mobilenet_v3_small", channels=(32, 16, 16), heads=2, fusion_dim=32)
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "final_model.pt", {"model_config": config.to_dict(),
                                             "state_dict": build_model(config).state_dict(),
                                             "contract": asdict(ModelContract(classes=CLASSES, input_size=64,
                                                                              name="tiny"))})
    scans = run / "scans"
    scans.mkdir()
    for path in sorted(mendeley_dir.rglob("*.jpg"))[::6][:8]:
        shutil.copy(path, scans / path.name)
    options = ExportOptions(source=run, out=run / "export", verify_data=scans, calib=scans, trt=True,
                            fp16_engine=True, int8=True, calib_method="minmax", max_batch=4)
    return run_export(options), gpu_with_tensorrt


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engines_follow_fp32_and_describe_their_device(trt_export, precision):
    import tensorrt

    from edgeecg.export.verify import onnx_logits

    result, (gpu, capability) = trt_export
    engine = result.out_dir / f"tiny-{precision}.engine"
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert (sidecar["gpu_name"], sidecar["compute_capability"], sidecar["tensorrt_version"]) == \
        (gpu, capability, tensorrt.__version__)
    assert sidecar["precision"] == precision and sidecar["contract"]["classes"] == CLASSES
    assert len(sidecar["source_onnx_sha256"]) == 64 and sidecar["max_batch"] == 4

    from edgeecg.backends import probabilities
    from edgeecg.export.scans import image_files, prepare_scans

    contract = ModelContract(classes=CLASSES, input_size=64)
    scans = prepare_scans(image_files(result.out_dir.parent / "scans"), contract, "scans").tensors
    backend = TensorRTBackend(engine)
    logits = backend.run(scans)  # 8 scans > max_batch 4: run in chunks
    backend.close()
    reference = onnx_logits(result.out_dir / "tiny.onnx", scans)
    assert logits.shape == reference.shape and np.isfinite(logits).all()
    shift = np.abs(probabilities(logits, contract) - probabilities(reference, contract))
    if precision == "fp16":
        assert (logits.argmax(1) == reference.argmax(1)).all() and shift.max() < 1e-2
    else:  # a random-init model's classes are close, so int8 may flip some; its probabilities stay close
        assert shift.mean() < 0.05


@pytest.mark.gpu
@pytest.mark.slow
def test_a_real_engine_with_a_doctored_sidecar_is_refused(trt_export):
    result, _ = trt_export
    engine = result.out_dir / "tiny-fp16.engine"
    sidecar = json.loads(sidecar_path(engine).read_text())
    sidecar_path(engine).write_text(json.dumps({**sidecar, "compute_capability": "5.3"}))
    with pytest.raises(EdgeECGError, match=REBUILD_HINT):
        TensorRTBackend(engine)
