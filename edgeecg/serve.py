"""`edgeecg serve`: the runtime behind HTTP, for phones and scanners on the clinic's network.

Safe by default: it listens on 127.0.0.1 only, and listening anywhere else
needs a bearer token (so a box on a ward network never answers strangers).
uvicorn stops on SIGTERM after the requests in flight are answered.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path

import click
import cv2
import uvicorn

from .errors import EdgeECGError
from .registry import DEFAULT_MODEL, resolve_model
from .serve_app import ServeSettings, create_app

MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = ("localhost",)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback needs --token")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
              help="shipped model name (see `edgeecg models`) or a .onnx file, fixed for the server's life")
@click.option("--workers", type=click.IntRange(min=1), help="inference workers (default: one per CPU core)")
@click.option("--queue", "queue_size", type=click.IntRange(min=0), default=16, show_default=True,
              help="requests that may wait for a worker; beyond that: 429")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="seconds a request may take, waiting included; beyond that: 503")
@click.option("--token", envvar="EDGEECG_TOKEN", show_envvar=True,
              help=f"bearer token clients must send (at least {MIN_TOKEN_CHARS} characters); "
                   "prefer the environment variable: options show in `ps`")
@click.option("--keep", "keep_dir", type=click.Path(file_okay=False, path_type=Path),
              help="save every processed upload and its result in DIR (default: keep nothing)")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="largest upload accepted; beyond that: 413")
def serve(host, port, model_name, workers, queue_size, timeout_s, token, keep_dir, max_upload_mb) -> None:
    """Serve classification and digitization over HTTP, with a capture page for phones at /."""
    check_binding(host, token)
    cores = os.cpu_count() or 1
    workers = workers or cores
    threads = max(1, cores // workers)
    cv2.setNumThreads(threads)  # this process only serves: OpenCV shares the cores with the workers
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    settings = ServeSettings(model=resolve_model(model_name), workers=workers, queue=queue_size,
                             timeout_s=timeout_s, token=token, keep_dir=keep_dir, threads=threads,
                             max_upload_bytes=int(max_upload_mb * 1e6))
    _log_json_lines()
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"edgeecg serve: {settings.model.name}, {workers} worker(s) x {threads} thread(s), "
               f"queue {queue_size}, on http://{shown}:{port}/ (Ctrl-C or SIGTERM stops)", err=True)
    uvicorn.run(app, host=host, port=port, access_log=False, server_header=False,
                timeout_graceful_shutdown=int(timeout_s) + 5, log_level="warning")


def check_binding(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token worth the name."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise EdgeECGError(f"--token must have at least {MIN_TOKEN_CHARS} characters (try: openssl rand -hex 24)")
    if token is None and not is_loopback(host):
        raise EdgeECGError(f"listening on {host} needs --token (or EDGEECG_TOKEN): anyone on the network could send images")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _log_json_lines() -> None:
    """Access lines (already JSON) and errors on stderr, one per line, for journald or a log shipper."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("edgeecg.access", "edgeecg.serve"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
