"""`edgeecg serve`: every endpoint through FastAPI's test client, the limits and refusals, the command itself
(SIGTERM finishes what is in flight), and the phone page driven in a real headless Chromium."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")

import httpx  # noqa: E402
import uvicorn  # noqa: E402

with warnings.catch_warnings():  # newer starlette asks for httpx2; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient  # noqa: E402

from edgeecg.backends import open_backend  # noqa: E402
from edgeecg.errors import EdgeECGError  # noqa: E402
from edgeecg.infer import classify_path  # noqa: E402
from edgeecg.registry import resolve_model  # noqa: E402
from edgeecg.serve import check_binding, is_loopback  # noqa: E402
from edgeecg.serve_app import ServeSettings, create_app  # noqa: E402

from helpers_cdp import Browser, find_browser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCAN = REPO / "examples" / "normal_normal_0120.jpg"
TOKEN = "s3cret-token-for-tests-0123456789"


class SlowBackend:
    """The real backend, held at `run` until released: a worker that is busy for as long as a test wants."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.contract, self.path, self.precision = (
            inner, inner.name, inner.contract, inner.path, inner.precision)
        self.release = threading.Event()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(10)
        return self.inner.run(batch)


class BrokenBackend(SlowBackend):
    def run(self, batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("secret internals at /opt/edgeecg/worker.py line 42")


@pytest.fixture(scope="module")
def backend():
    return open_backend(resolve_model("default"), threads=1)


@pytest.fixture(scope="module")
def client(backend):
    return make_client(backend)


def make_client(backend, **settings) -> TestClient:
    app = create_app(ServeSettings(model=backend.path, **settings), backend_factory=lambda: backend)
    return TestClient(app, raise_server_exceptions=False)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header and holds almost no data (a decompression-bomb stand-in)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    import cv2

    return cv2.imencode(ext, image)[1].tobytes()


def test_page_is_one_self_contained_file_for_a_phone(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'accept="image/*"' in html and 'capture="environment"' in html and 'name="viewport"' in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html  # nothing from elsewhere
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "access-control-allow-origin" not in response.headers  # CORS off


def test_health_models_docs_and_metrics(client, backend):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == backend.contract.name
    models = client.get("/v1/models").json()
    assert models["serving"]["file"] == "default.onnx" and models["serving"]["classes"] == list(backend.contract.classes)
    assert "default" in models["shipped"] and "/" not in json.dumps(models["serving"]["file"])
    schema = client.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/digitize", "/v1/models", "/healthz", "/metrics"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200

    client.post("/v1/classify", content=SCAN.read_bytes(), headers={"content-type": "image/jpeg"})
    client.post("/v1/classify", content=b"not an image")
    text = client.get("/metrics").text
    assert 'edgeecg_requests_total{endpoint="/v1/classify",status="200"}' in text
    assert 'edgeecg_errors_total{endpoint="/v1/classify",reason="upload"}' in text
    for stage in ("decode", "crop", "preprocess", "model"):
        assert f'edgeecg_stage_seconds_bucket{{le="0.005",stage="{stage}"}}' in text
    assert "edgeecg_request_seconds_bucket" in text and "edgeecg_queue_depth 0.0" in text


def test_classify_answers_what_infer_json_prints(client, backend):
    expected = classify_path(SCAN, backend)
    for response in (client.post("/v1/classify", files={"file": (SCAN.name, SCAN.read_bytes(), "image/jpeg")}),
                     client.post("/v1/classify", content=SCAN.read_bytes(), headers={"content-type": "image/jpeg"})):
        assert response.status_code == 200, response.text
        result = response.json()
        assert set(result) == set(expected) and result["path"] is None  # the client's file name is not echoed
        assert result["label"] == expected["label"] and result["crop"] == expected["crop"]
        assert result["probs"] == pytest.approx(expected["probs"], abs=1e-5)
        assert result["ms"]["decode"] > 0 and result["ms"]["total"] >= result["ms"]["model"]


def test_digitize_json_csv_and_wfdb(client):
    page = client.post("/v1/digitize?rate=100", content=SCAN.read_bytes())
    assert page.status_code == 200, page.text
    document = page.json()
    assert len(document["leads"]) == 12 and document["rate_hz"] == 100 and len(document["leads"]["II"]) == 1000
    assert document["layout"] and document["ms"]["digitize"] > 0
    for fmt, names in (("csv", {"ecg.csv", "ecg.page.json"}), ("wfdb", {"ecg.hea", "ecg.dat"})):
        response = client.post(f"/v1/digitize?format={fmt}&rate=100", content=SCAN.read_bytes())
        assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
        assert set(zipfile.ZipFile(io.BytesIO(response.content)).namelist()) == names
    for query in ("format=xml", "rate=5", "layout=7x7"):
        refused = client.post(f"/v1/digitize?{query}", content=SCAN.read_bytes())
        assert refused.status_code == 400 and "\n" not in refused.json()["error"]


@pytest.mark.parametrize("name, body, content_type, status, words", [
    ("empty", b"", "image/jpeg", 400, "empty upload"),
    ("truncated", SCAN.read_bytes()[:5000], "image/jpeg", 400, "truncated JPEG"),
    ("text", b"hello, this is not an image\n" * 20, None, 400, "not a JPEG, PNG, TIFF or BMP"),
    ("text type", b"hello", "text/plain", 415, "text/plain"),
    ("huge dimensions", png_header(60000, 60000), "image/png", 413, "too large"),
    ("tiny", encode(np.full((20, 20, 3), 255, np.uint8)), "image/png", 400, "too small"),
    ("no ECG", encode(np.full((300, 400, 3), 255, np.uint8)), "image/png", 422, "no ECG grid"),
    ("bad form", b"--x\r\nnonsense", "multipart/form-data; boundary=zz", 400, "malformed multipart"),
])
def test_bad_uploads_get_a_4xx_with_one_line_and_the_workers_live_on(client, name, body, content_type, status, words):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/classify", content=body, headers=headers)
    assert response.status_code == status, (name, response.text)
    reason = response.json()["error"]
    assert words in reason and "\n" not in reason and "Traceback" not in reason
    assert client.post("/v1/classify", content=SCAN.read_bytes()).status_code == 200


def test_a_form_without_a_file_is_refused(client):
    response = client.post("/v1/classify", files={"note": (None, "no file here")})
    assert response.status_code == 400 and "no file" in response.json()["error"]


def test_oversized_uploads_get_413_before_decoding(backend):
    small = make_client(backend, max_upload_bytes=10_000)
    declared = small.post("/v1/classify", content=SCAN.read_bytes())  # Content-Length says too much
    assert declared.status_code == 413 and "limit" in declared.json()["error"]
    streamed = small.post("/v1/classify", content=iter([SCAN.read_bytes()[:8000]] * 3))  # chunked, no length
    assert streamed.status_code == 413
    few_pixels = make_client(backend, max_pixels=100_000)
    assert few_pixels.post("/v1/classify", content=SCAN.read_bytes()).status_code == 413


def test_token_guards_the_api_but_not_health_or_page(backend):
    guarded = make_client(backend, token=TOKEN)
    for method, path in (("post", "/v1/classify"), ("post", "/v1/digitize"), ("get", "/v1/models"), ("get", "/metrics")):
        for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": f"Basic {TOKEN}"}):
            response = getattr(guarded, method)(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
    ok = guarded.post("/v1/classify", content=SCAN.read_bytes(), headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert guarded.get("/healthz").status_code == 200 and guarded.get("/").status_code == 200


def test_full_queue_gets_429_with_retry_after(backend):
    slow = SlowBackend(backend)
    busy = make_client(slow, workers=1, queue=0)
    first: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: first.append(busy.post("/v1/classify", content=SCAN.read_bytes())))
    waiting.start()
    try:
        deadline = time.monotonic() + 10
        while busy.app.state.pool.busy == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = busy.post("/v1/classify", content=SCAN.read_bytes())
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["error"]
        assert "edgeecg_workers_busy 1.0" in busy.get("/metrics").text
    finally:
        slow.release.set()
        waiting.join(20)
    assert first[0].status_code == 200


def test_time_limit_gives_503_and_the_worker_recovers(backend):
    slow = SlowBackend(backend)
    limited = make_client(slow, workers=1, timeout_s=0.3)
    response = limited.post("/v1/classify", content=SCAN.read_bytes())
    assert response.status_code == 503 and "0.3 s limit" in response.json()["error"] and "retry-after" in response.headers
    slow.release.set()
    assert limited.post("/v1/classify", content=SCAN.read_bytes()).status_code == 200


def test_internal_errors_never_echo_a_stack_trace(backend):
    broken = make_client(BrokenBackend(backend))
    response = broken.post("/v1/classify", content=SCAN.read_bytes())
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (logged on the server)"}
    assert broken.get("/healthz").status_code == 200


def test_uploads_are_kept_only_when_asked(backend, tmp_path):
    keeping = make_client(backend, keep_dir=tmp_path / "kept")
    assert keeping.post("/v1/classify", content=SCAN.read_bytes()).status_code == 200
    kept = sorted(p.suffix for p in (tmp_path / "kept").iterdir())
    assert kept == [".jpg", ".json"]


def test_access_log_is_one_json_line_per_request(client, caplog):
    with caplog.at_level("INFO", logger="edgeecg.access"):
        client.get("/healthz")
        client.post("/v1/classify", content=b"")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "edgeecg.access"]
    assert [(line["path"], line["status"]) for line in lines] == [("/healthz", 200), ("/v1/classify", 400)]
    assert lines[1]["reason"] == "upload" and lines[1]["ms"] >= 0


def test_binding_beyond_loopback_needs_a_long_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("box.local")
    check_binding("127.0.0.1", None)
    check_binding("0.0.0.0", TOKEN)
    with pytest.raises(EdgeECGError, match="needs --token"):
        check_binding("0.0.0.0", None)
    with pytest.raises(EdgeECGError, match="at least 16"):
        check_binding("127.0.0.1", "short")


def test_serve_command_stops_on_sigterm_after_answering_requests_in_flight(tmp_path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("EDGEECG_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, "-c", "from edgeecg.cli import main; main()", "serve", "--port", str(port), "--workers", "1"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, server)
        answers: list[httpx.Response] = []
        in_flight = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{base}/v1/digitize", content=SCAN.read_bytes(), timeout=30)))
        in_flight.start()
        deadline = time.monotonic() + 20
        while httpx.get(f"{base}/healthz").json()["busy"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # until the page is being read (about half a second)
        server.send_signal(signal.SIGTERM)
        in_flight.join(30)
        assert server.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["leads"]) == 12
    logged = [json.loads(line) for line in server.stderr.read().splitlines() if line.startswith("{")]
    assert {"path": "/v1/digitize", "status": 200}.items() <= logged[-1].items()


def test_serve_refuses_an_open_port_without_token():
    done = subprocess.run([sys.executable, "-c", "from edgeecg.cli import main; main()", "serve", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "EDGEECG_TOKEN": ""})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "needs --token" in done.stderr


def test_phone_page_in_headless_chromium(backend):
    browser_path = find_browser()
    if browser_path is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium with apt-get)")
    app = create_app(ServeSettings(model=backend.path, workers=1), backend_factory=lambda: backend)
    with serving(app) as base:
        browser = Browser(browser_path)
        try:
            browser.open(base + "/")
            browser.set_file("#file", SCAN)
            label = browser.wait_for("document.getElementById('label').dataset.label")
            assert label == classify_path(SCAN, backend)["label"]
            assert browser.evaluate("document.getElementById('label').textContent") == label.replace("_", " ")
            assert browser.evaluate("document.querySelectorAll('#probs .bar').length") == 4
            assert browser.wait_for("!document.getElementById('leads-card').classList.contains('hidden') "
                                    "&& document.getElementById('status').textContent === ''")
            assert browser.evaluate("document.getElementById('leads').height") > 0  # the leads were plotted
            browser.set_file("#file", REPO / "README.md")  # not an image: a plain reason, no label
            reason = browser.wait_for("document.getElementById('reason').textContent")
            assert reason.startswith("Not read: ") and browser.evaluate("document.getElementById('label').dataset.label") == ""
            assert browser.evaluate("document.querySelectorAll('#history li').length") == 2
        finally:
            browser.close()


@contextmanager
def serving(app) -> Iterator[str]:
    """uvicorn serving `app` on a free loopback port in a thread (a browser needs a real socket); its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{listening.getsockname()[1]}"
        finally:
            server.should_exit = True
            thread.join(20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(base: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server never became healthy")
