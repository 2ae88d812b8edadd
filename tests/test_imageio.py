"""imageio: every supported format decodes to uint8 BGR; every broken file is refused in one line."""

from __future__ import annotations

import inspect
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeecg import imageio
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import image_header, read_image
from helpers_onnx import run_cli, write_tiny_model


@pytest.fixture(scope="module")
def scan(mendeley_dir: Path) -> np.ndarray:
    return cv2.imread(str(next(iter(sorted((mendeley_dir / "normal").glob("*.jpg"))))))


@pytest.fixture(scope="module")
def scan_png(tmp_path_factory, scan) -> Path:
    path = tmp_path_factory.mktemp("scan") / "scan.png"
    cv2.imwrite(str(path), scan)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_lossless_formats_decode_to_the_same_bgr_pixels(tmp_path, scan, suffix):
    path = tmp_path / f"scan{suffix}"
    cv2.imwrite(str(path), scan)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == scan.shape
    np.testing.assert_array_equal(image, scan)


def test_jpeg_decodes_close_to_the_original(tmp_path, scan):
    path = tmp_path / "scan.jpg"
    cv2.imwrite(str(path), scan, [cv2.IMWRITE_JPEG_QUALITY, 95])
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == scan.shape
    assert np.abs(image.astype(int) - scan).mean() < 3


def test_format_comes_from_the_bytes_not_the_name(tmp_path, scan):
    path = tmp_path / "really_a_png.jpg"
    cv2.imwrite(str(path.with_suffix(".png")), scan)
    path.write_bytes(path.with_suffix(".png").read_bytes())
    assert image_header(path.read_bytes())[0] == "PNG"
    np.testing.assert_array_equal(read_image(path), scan)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".bmp"])
def test_header_dimensions_match_the_decoded_image(tmp_path, scan, suffix):
    small = cv2.resize(scan, (301, 177))
    path = tmp_path / f"small{suffix}"
    cv2.imwrite(str(path), small)
    _, width, height = image_header(path.read_bytes())
    assert (width, height) == (301, 177)


def test_grayscale_becomes_three_equal_channels(tmp_path, scan):
    grey = cv2.cvtColor(scan, cv2.COLOR_BGR2GRAY)
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), grey)
    image = read_image(path)
    assert image.shape == scan.shape
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], grey)


def test_rgba_transparency_becomes_white_paper(tmp_path, scan):
    bgra = cv2.cvtColor(scan, cv2.COLOR_BGR2BGRA)
    bgra[:50, :50, 3] = 0  # fully transparent corner
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), bgra)
    image = read_image(path)
    assert image.shape == scan.shape
    assert (image[:50, :50] == 255).all()
    np.testing.assert_array_equal(image[50:, 50:], scan[50:, 50:])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_scale_to_8_bit(tmp_path, scan, suffix):
    path = tmp_path / f"deep{suffix}"
    cv2.imwrite(str(path), scan.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(path), scan)


def test_cmyk_jpeg_is_accepted(tmp_path, scan):
    Image = pytest.importorskip("PIL.Image")
    rgb = Image.fromarray(cv2.cvtColor(scan, cv2.COLOR_BGR2RGB))
    path = tmp_path / "cmyk.jpg"
    rgb.convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    assert image.shape == scan.shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - scan).mean() < 5


def test_jpeg_exif_orientation_is_applied(tmp_path, scan):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write it
    Image.fromarray(cv2.cvtColor(scan, cv2.COLOR_BGR2RGB)).save(path, exif=exif.tobytes(), quality=95)
    image = read_image(path)
    assert image.shape == (scan.shape[1], scan.shape[0], 3)
    assert np.abs(image.astype(int) - cv2.rotate(scan, cv2.ROTATE_90_CLOCKWISE)).mean() < 3


def test_large_jpeg_is_decoded_reduced_to_twice_what_the_page_reader_reads(tmp_path, scan):
    """A JPEG four times the side the page reader reads or more (MAX_READ_SIDE: a 48 MP phone photo) comes out
    2, 4 or 8 times smaller, never below twice that side; None (and a lossless file) keeps every pixel."""
    from edgeecg.imageio import REDUCED_DECODE_MARGIN
    from edgeecg.page import MAX_READ_SIDE

    assert inspect.signature(read_image).parameters["max_side"].default == MAX_READ_SIDE
    side = 150  # the reader's side in this test, so the files stay small
    least = REDUCED_DECODE_MARGIN * side
    big = cv2.resize(scan, (4 * least + 100, (4 * least + 100) * scan.shape[0] // scan.shape[1]))
    cv2.imwrite(str(tmp_path / "photo.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(str(tmp_path / "photo.png"), big)
    reduced = read_image(tmp_path / "photo.jpg", max_side=side)
    assert reduced.shape == (-(-big.shape[0] // 4), -(-big.shape[1] // 4), 3) and reduced.dtype == np.uint8
    assert np.abs(reduced.astype(int) - cv2.resize(big, reduced.shape[1::-1], interpolation=cv2.INTER_AREA)).mean() < 3
    assert read_image(tmp_path / "photo.jpg", max_side=None).shape == big.shape
    assert read_image(tmp_path / "photo.jpg", max_side=2 * side).shape[1] == -(-big.shape[1] // 2)
    assert read_image(tmp_path / "photo.png", max_side=side).shape == big.shape
    just_under = cv2.resize(scan, (2 * least - 2, least))
    cv2.imwrite(str(tmp_path / "under.jpg"), just_under)
    assert read_image(tmp_path / "under.jpg", max_side=side).shape == just_under.shape  # halving: under the margin


def test_memory_budget_counts_the_reduced_size(tmp_path, scan):
    """A JPEG too large to decode whole within the byte budget is read reduced instead of refused."""
    big = cv2.resize(scan, (2400, 2400 * scan.shape[0] // scan.shape[1]))
    data = cv2.imencode(".jpg", big)[1].tobytes()
    budget = big.shape[0] * big.shape[1] * 3  # the BGR result alone: decoding it whole needs more
    with pytest.raises(EdgeECGError, match="needs about"):
        imageio.decode_image(data, max_side=None, max_bytes=budget)
    assert imageio.decode_image(data, max_side=300, max_bytes=budget).shape[1] == 600


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (its pixel data is never reached)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_bad_inputs(folder: Path, scan: np.ndarray) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    encoded = {ext: cv2.imencode(ext, scan)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".tif")}
    files = {
        "missing": (folder / "missing.jpg", None, "no such file"),
        "empty": (folder / "empty.jpg", b"", "empty file"),
        "truncated_jpeg": (folder / "cut.jpg", encoded[".jpg"][: len(encoded[".jpg"]) * 2 // 3], "truncated JPEG"),
        "truncated_png": (folder / "cut.png", encoded[".png"][: len(encoded[".png"]) // 2], "truncated PNG"),
        "truncated_bmp": (folder / "cut.bmp", encoded[".bmp"][: len(encoded[".bmp"]) // 2], "truncated BMP"),
        "truncated_tiff": (folder / "cut.tif", encoded[".tif"][: len(encoded[".tif"]) // 2], "TIFF"),
        "text_named_png": (folder / "notes.png", b"this is not an image\n", "not a JPEG, PNG, TIFF or BMP"),
        "one_pixel": (folder / "dot.png", cv2.imencode(".png", scan[:1, :1])[1].tobytes(), "too small"),
        "huge": (folder / "huge.png", _png_with_size(10_000, 10_000), "too large"),
    }
    for path, data, _ in files.values():
        if data is not None:
            path.write_bytes(data)
    return {name: (path, words) for name, (path, _, words) in files.items()}


BAD_INPUTS = ["missing", "empty", "truncated_jpeg", "truncated_png", "truncated_bmp", "truncated_tiff",
              "text_named_png", "one_pixel", "huge"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, scan) -> dict[str, tuple[Path, str]]:
    return make_bad_inputs(tmp_path_factory.mktemp("bad"), scan)


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_refused_in_one_line(bad_inputs, name):
    path, words = bad_inputs[name]
    with pytest.raises(EdgeECGError) as info:
        read_image(path)
    message = str(info.value)
    assert words in message and str(path) in message
    assert "\n" not in message


def test_huge_image_is_refused_before_decoding(bad_inputs, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("imdecode called for an oversized image")

    monkeypatch.setattr(imageio.cv2, "imdecode", no_decoding)
    with pytest.raises(EdgeECGError, match="too large"):
        read_image(bad_inputs["huge"][0])


def test_pixel_limit_is_a_parameter(scan_png):
    height, width = cv2.imread(str(scan_png)).shape[:2]
    assert read_image(scan_png, max_pixels=width * height).shape[:2] == (height, width)
    with pytest.raises(EdgeECGError, match="too large"):
        read_image(scan_png, max_pixels=width * height - 1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_cli_reports_a_bad_input_in_one_line(bad_inputs, tiny_model, monkeypatch, capsys, name):
    path, words = bad_inputs[name]
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", tiny_model, path)
    assert code == 1
    assert out == ""
    assert err.strip().count("\n") == 0 and words in err and err.startswith("error: ")
    assert "Traceback" not in err
