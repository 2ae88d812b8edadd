"""The HTTP face of the runtime: a FastAPI app over a bounded worker pool.

Every answer is JSON with one-line `error` reasons (never a stack trace);
client input is only ever image bytes and a few typed query parameters, never
a file or model path. CORS is off: the page at / is served by this app itself.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from time import perf_counter
from typing import Callable

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from . import __version__, serve_jobs
from .backends import Backend
from .signal_runtime import open_model
from .errors import EdgeECGError
from .imageio import MAX_PIXELS
from .infer import model_info
from .layouts import LAYOUTS
from .registry import shipped_model_paths
from .serve_metrics import Metrics
from .serve_pool import PoolFull, PoolTimeout, WorkerPool
from .serve_upload import UploadRefused, check_image, image_bytes, read_body

access_log = logging.getLogger("edgeecg.access")
error_log = logging.getLogger("edgeecg.serve")

MAX_UPLOAD_BYTES = 20_000_000  # a 50 MP phone JPEG is ~15 MB
PAGE_HEADERS = {  # the page loads nothing from elsewhere; camera pictures become blob: URLs
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "script-src 'unsafe-inline'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
IMAGE_BODY = {  # OpenAPI: the upload is read from the raw body, so FastAPI cannot describe it by itself
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}}}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class SignalFormat(str, Enum):
    json = "json"
    csv = "csv"
    wfdb = "wfdb"


@dataclass(frozen=True)
class ServeSettings:
    """What `edgeecg serve` was started with."""

    model: Path
    workers: int = 1
    queue: int = 16  # jobs that may wait for a worker beyond those running
    timeout_s: float = 30.0
    token: str | None = None
    keep_dir: Path | None = None
    threads: int | None = None  # ONNX Runtime threads per worker
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS


def create_app(settings: ServeSettings, backend_factory: Callable[[], Backend] | None = None) -> FastAPI:
    """The app, with its worker pool loaded (the model is opened once per worker, now)."""
    factory = backend_factory or (lambda: open_model(settings.model, threads=settings.threads))
    pool = WorkerPool(factory, settings.workers, settings.queue, settings.timeout_s)
    metrics = Metrics(lambda: pool.queue_depth, lambda: pool.busy)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.close()  # uvicorn has let the requests in flight finish; now the workers

    app = FastAPI(title="edgeecg", version=__version__, lifespan=lifespan,
                  description="Classify and digitize 12-lead ECG printout images. Not a medical device.")
    app.state.pool = pool
    app.state.metrics = metrics
    authorized = [Depends(_bearer(settings.token))]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = resources.files("edgeecg").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get("/healthz", summary="liveness: the model is loaded and the pool answers")
    def healthz() -> dict:
        return {"status": "ok", "model": pool.model.contract.name, "workers": pool.workers,
                "busy": pool.busy, "queue_depth": pool.queue_depth}

    @app.get("/v1/models", dependencies=authorized, summary="the model served and the models shipped")
    def models() -> dict:
        contract = pool.model.contract
        return {"serving": {**model_info(pool.model), "task": contract.task, "classes": list(contract.classes),
                            "input_size": contract.input_size},
                "shipped": sorted(shipped_model_paths())}

    @app.post("/v1/classify", dependencies=authorized, openapi_extra=IMAGE_BODY,
              summary="classify a printout image: the JSON of `edgeecg infer --json`")
    async def classify(request: Request) -> dict:
        data, kind = await _upload(request, settings)

        def job(backend: Backend) -> dict:
            result = serve_jobs.classify(data, backend, settings.max_pixels)
            serve_jobs.keep(settings.keep_dir, data, kind, result)
            return result

        result = await _run(pool, job)
        metrics.observe_stages(result["ms"])
        return result

    @app.post("/v1/digitize", dependencies=authorized, openapi_extra=IMAGE_BODY,
              summary="read the 12 leads in mV: JSON, or CSV/WFDB files in a zip")
    async def digitize(
        request: Request,
        format: SignalFormat = SignalFormat.json,
        rate: float = Query(500.0, ge=50.0, le=5000.0, description="sampling rate of the signals, Hz"),
        layout: str | None = Query(None, description=f"skip layout detection: {', '.join(sorted(LAYOUTS))}"),
    ) -> Response:
        if layout is not None and layout not in LAYOUTS:
            raise HTTPException(400, f"unknown layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
        data, kind = await _upload(request, settings)

        def job(_backend: Backend) -> tuple[dict, bytes | None]:
            summary, archive = serve_jobs.digitize(data, settings.max_pixels, rate, layout, format.value)
            serve_jobs.keep(settings.keep_dir, data, kind, summary)
            return summary, archive

        summary, archive = await _run(pool, job)
        metrics.observe_stages(summary["ms"])
        if archive is None:
            return JSONResponse(summary)
        return Response(archive, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="ecg-{format.value}.zip"'})

    @app.get("/metrics", dependencies=authorized, summary="Prometheus metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    _add_error_handlers(app)
    _add_access_log(app, metrics)
    return app


async def _upload(request: Request, settings: ServeSettings) -> tuple[bytes, str]:
    """The image bytes and format; a client too slow to send them gets 408 (the time limit covers uploads too)."""
    try:
        body = await asyncio.wait_for(read_body(request.headers, request.stream(), settings.max_upload_bytes),
                                      settings.timeout_s)
    except asyncio.TimeoutError:
        raise _Refusal(408, f"the upload took longer than the {settings.timeout_s:g} s limit", "timeout") from None
    data = image_bytes(body, request.headers.get("content-type", ""))
    return data, check_image(data, settings.max_pixels)


async def _run(pool: WorkerPool, job):
    try:
        return await pool.run(job)
    except PoolFull:
        raise _Refusal(429, "busy: every worker is occupied and the queue is full; retry shortly", "busy",
                       {"Retry-After": "1"}) from None
    except PoolTimeout:
        raise _Refusal(503, f"the request took longer than the {pool.timeout_s:g} s limit", "timeout",
                       {"Retry-After": str(max(1, math.ceil(pool.timeout_s / 2)))}) from None


def _bearer(token: str | None) -> Callable[[Request], None]:
    """A dependency that checks `Authorization: Bearer <token>` in constant time (no-op without a token)."""
    expected = token.encode() if token else None

    def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise _Refusal(401, "missing or wrong bearer token", "auth", {"WWW-Authenticate": "Bearer"})

    return check


class _Refusal(Exception):
    """A request answered with an error: status, one-line reason, a metrics label, headers."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers or {}


def _error(request: Request, status: int, message: str, reason: str, headers: dict | None = None) -> JSONResponse:
    request.state.error_reason = reason
    return JSONResponse({"error": message.splitlines()[0] if message else reason}, status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(_Refusal)
    async def refused(request: Request, exc: _Refusal) -> JSONResponse:
        return _error(request, exc.status, exc.message, exc.reason, exc.headers)

    @app.exception_handler(UploadRefused)
    async def bad_upload(request: Request, exc: UploadRefused) -> JSONResponse:
        return _error(request, exc.status, str(exc), "upload")

    @app.exception_handler(EdgeECGError)
    async def unreadable(request: Request, exc: EdgeECGError) -> JSONResponse:
        return _error(request, 422, str(exc), "unreadable")  # an image, but not a page we can read

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(request, exc.status_code, str(exc.detail), "http", getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(request, 400, f"{where}: {first.get('msg', 'invalid request')}", "invalid")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        error_log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(request, 500, "internal error (logged on the server)", "internal")


def _add_access_log(app: FastAPI, metrics: Metrics) -> None:
    """One JSON line per request on the `edgeecg.access` logger, and the request metrics."""

    @app.middleware("http")
    async def log_request(request: Request, call_next) -> Response:
        start = perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            seconds = perf_counter() - start
            route = request.scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            metrics.requests.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(seconds)
            if status >= 400:
                metrics.errors.labels(endpoint, getattr(request.state, "error_reason", str(status))).inc()
            access_log.info(json.dumps({
                "time": round(time.time(), 3), "client": request.client.host if request.client else None,
                "method": request.method, "path": request.url.path, "status": status,
                "ms": round(seconds * 1e3, 2), "bytes_in": int(request.headers.get("content-length") or 0),
                "reason": getattr(request.state, "error_reason", None),
            }))
