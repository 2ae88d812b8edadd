"""Any file a scanner or a person drops is reported in one line, and the batch goes on (issue 15, parts 3 and 6),
plus a seeded fuzzer of mutated real images through the `edgeecg infer` code path."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeecg import imageio
from edgeecg.backends import open_backend
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import decode_bytes, read_image
from edgeecg.infer import classify_path
from helpers_onnx import run_cli, write_tiny_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _infer(monkeypatch, capsys, model: Path, *args) -> tuple[int, dict[str, dict], str]:
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", model, "--json", *args)
    return code, {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}, err


def _flipped(data: bytes, offset: int) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= 0x40
    return bytes(damaged)


def test_odd_entries_in_a_folder_are_reported_not_skipped(tmp_path, tiny_model, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_scan.jpg").write_bytes(EXAMPLES[0].read_bytes())
    for name in ("b.gif", "c.webp", "d.heic"):
        (folder / name).write_bytes(b"GIF89a" + b"\0" * 100)
    (folder / "e.jpg").mkdir()  # a folder named like an image
    (folder / "f_loop.jpg").symlink_to(folder / "f_loop.jpg")
    (folder / "g_gone.png").symlink_to(folder / "absent.png")
    (folder / "h_dir_loop").symlink_to(folder)
    (folder / "notes.txt").write_text("not an image, not listed")
    code, results, err = _infer(monkeypatch, capsys, tiny_model, folder)
    assert code == 1 and "Traceback" not in err
    assert "label" in results["a_scan.jpg"]
    assert all("unsupported format" in results[n]["error"] for n in ("b.gif", "c.webp", "d.heic"))
    assert results["e.jpg"]["error"] == "a folder named like an image"
    assert results["f_loop.jpg"]["error"] == "symbolic link loop"
    assert results["g_gone.png"]["error"] == "broken symbolic link"
    assert "link loop" in results["h_dir_loop"]["error"] and "notes.txt" not in results
    assert "8 input(s): 1 classified, 0 refused, 7 failed" in err


def test_long_and_undecodable_names_are_reported_safely(tmp_path, tiny_model, monkeypatch, capsys):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/scan-\xff\xfe\nerror: forged.jpg"))
    odd.write_bytes(EXAMPLES[0].read_bytes())
    long_name = tmp_path / ("x" * 300 + ".jpg")
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", tiny_model, odd, long_name)
    assert code == 1 and "Traceback" not in err
    assert "scan-\\xff\\xfe\\nerror: forged.jpg: " in out and out.count("\nerror:") == 0
    assert err.splitlines()[0] == f"error: {long_name}: cannot read (File name too long)"


def test_model_errors_mid_batch_are_reported_and_the_batch_goes_on(tmp_path, tiny_model, monkeypatch, capsys):
    calls = []

    def flaky(self, batch):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA error: an illegal memory access\nstack ...")
        return np.zeros((1, 4), np.float32)

    monkeypatch.setattr("edgeecg.backends.OnnxRuntimeBackend.run", flaky)
    code, results, err = _infer(monkeypatch, capsys, tiny_model, *EXAMPLES[:2])
    assert code == 1 and len(results) == 2
    assert results[EXAMPLES[0].name]["error"] == "internal error (RuntimeError: CUDA error: an illegal memory access)"
    assert "label" in results[EXAMPLES[1].name]


@pytest.fixture
def corrupt_jpeg(tmp_path) -> Path:
    data = (REPO / "examples" / "normal_normal_0120.jpg").read_bytes()
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(_flipped(data, 60781))  # libjpeg: "Corrupt JPEG data: 4 extraneous bytes before marker"
    return corrupt


def test_corrupt_jpeg_data_is_an_error_unless_allowed(corrupt_jpeg, capfd):
    with pytest.raises(EdgeECGError, match="corrupt JPEG data .*allow-corrupt"):
        read_image(corrupt_jpeg)
    assert read_image(corrupt_jpeg, allow_corrupt=True).shape[2] == 3
    assert "Corrupt JPEG" not in capfd.readouterr().err  # the decoder's own words never reach the terminal raw


def test_allow_corrupt_classifies_it(corrupt_jpeg, tiny_model, monkeypatch, capsys):
    code, results, _ = _infer(monkeypatch, capsys, tiny_model, corrupt_jpeg)
    assert code == 1 and "corrupt JPEG data" in results["corrupt.jpg"]["error"]
    code, results, _ = _infer(monkeypatch, capsys, tiny_model, "--allow-corrupt", "--no-crop", corrupt_jpeg)
    assert code == 0 and "label" in results["corrupt.jpg"]


def test_save_crop_names_are_unique_per_input(tmp_path, tiny_model, monkeypatch, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "scan.jpg").write_bytes(EXAMPLES[0].read_bytes())
    code, results, _ = run_cli(monkeypatch, capsys, "infer", "--model", tiny_model, "--save-crop", tmp_path / "crops",
                               tmp_path / "a" / "scan.jpg", tmp_path / "b" / "scan.jpg")
    assert code == 0 and len(list((tmp_path / "crops").glob("scan-*.png"))) == 2


def _png_header_only(width: int, height: int, depth: int, colour: int) -> bytes:
    """A small PNG whose header claims width x height at `depth` bits and `colour` type (pixels never reached)."""
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_16_bit_rgba_png_of_50_mp_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "deep.png"
    path.write_bytes(_png_header_only(7070, 7070, 16, 6))  # 49.98 MP, 16-bit RGBA
    monkeypatch.setattr(imageio.cv2, "imdecode", lambda *a: pytest.fail("decoded an image over the byte budget"))
    with pytest.raises(EdgeECGError, match=r"needs about \d+ MB to decode \(limit 600 MB\)"):
        read_image(path)
    path.write_bytes(_png_header_only(7070, 7070, 8, 2))  # the same page as 8-bit RGB fits
    assert decode_bytes(7070, 7070, 3, 1) < imageio.MAX_DECODE_BYTES


def test_a_thin_strip_is_refused_not_a_traceback(tmp_path):
    path = tmp_path / "strip.png"
    cv2.imwrite(str(path), np.full((64, 41_600, 3), 255, np.uint8))
    with pytest.raises(EdgeECGError, match="strip, not a page"):
        read_image(path)


# --- the fuzzer -------------------------------------------------------------------------------------


def _seeds() -> list[tuple[str, bytes]]:
    """Real scans as JPEG, and a rendered-like page (grid drawn here) as PNG, BMP and TIFF."""
    page = cv2.resize(cv2.imread(str(EXAMPLES[0])), (400, 284))
    seeds = [(p.name, p.read_bytes()) for p in EXAMPLES[:2]]
    seeds += [(f"page{ext}", cv2.imencode(ext, page)[1].tobytes()) for ext in (".png", ".bmp", ".tif")]
    return seeds


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: bit flips anywhere, bit flips in the header, a truncation, a header field set to an extreme."""
    damaged = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for offset in rng.integers(0, len(damaged), rng.integers(1, 8)):
            damaged[offset] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        for offset in rng.integers(0, min(len(damaged), 64), rng.integers(1, 4)):
            damaged[offset] ^= 1 << int(rng.integers(8))
    elif kind == 2:
        return bytes(damaged[: int(rng.integers(0, len(damaged)))])
    else:
        offset = int(rng.integers(2, min(len(damaged) - 4, 40)))
        damaged[offset : offset + 4] = bytes(rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\0\x01"]))
    return bytes(damaged)


@pytest.mark.timeout(60)
def test_fuzzed_images_never_raise_anything_but_one_line_errors(tmp_path, tiny_model, monkeypatch, capsys):
    rng = np.random.default_rng(15)
    seeds = _seeds()
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for index in range(320):
        name, data = seeds[index % len(seeds)]
        (folder / f"{index:03d}-{name}").write_bytes(_mutate(data, rng))
    backend = open_backend(tiny_model)
    outcomes = {"classified": 0, "refused": 0}
    for path in sorted(folder.iterdir())[:80]:  # the library call: EdgeECGError or a result, nothing else
        try:
            classify_path(path, backend, crop=False)
            outcomes["classified"] += 1
        except EdgeECGError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", tiny_model, "--json", folder)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 320 and "Traceback" not in err
    assert not [r["error"] for r in lines if r.get("error", "").startswith("internal error")]
    assert min(outcomes.values()) > 0  # the mutations reach both outcomes
