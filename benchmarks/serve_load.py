"""Load-test `edgeecg serve` on loopback: N classify requests at concurrency C, against the serial rate.

    python benchmarks/serve_load.py [--requests 1000] [--concurrency 16] [--model default] [--workers N]

Starts its own server on 127.0.0.1 (a free port; nothing else is ever bound
or contacted), posts the example scans round-robin from C client threads with
keep-alive connections, and stops the server with SIGTERM. Before that it
measures the serial end-to-end rate of the same model in this process (file
bytes -> decode, crop, preprocess, model; 1000 / p50 ms, as `edgeecg bench`
reports it), so the server's throughput has a yardstick from the same machine
at the same time. The client threads share the cores with the server, as a
phone's requests would not: the figures are a floor. Exits 1 on any response
that is neither a result (200) nor a refusal to queue (429).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgeecg.signal_runtime import open_model
from edgeecg.imageio import decode_image
from edgeecg.infer import classify_image
from edgeecg.machine import cpu_model
from edgeecg.registry import DEFAULT_MODEL, resolve_model

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
SERIAL_WARMUP, SERIAL_RUNS = 5, 50
STARTUP_S = 120


def serial_rate(model: Path, bodies: list[bytes]) -> float:
    """Images per second, one at a time in this process: 1000 / p50 of decode + classify from bytes."""
    backend = open_model(model)
    times = []
    for i in range(SERIAL_WARMUP + SERIAL_RUNS):
        start = time.perf_counter()
        classify_image(decode_image(bodies[i % len(bodies)]), backend)
        times.append((time.perf_counter() - start) * 1e3)
    return 1000.0 / float(np.median(times[SERIAL_WARMUP:]))


def start_server(model: str, workers: int | None, log) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-c", "from edgeecg.cli import main; main()", "serve",
               "--host", HOST, "--port", str(port), "--model", model]
    if workers:
        command += ["--workers", str(workers)]
    env = {key: value for key, value in os.environ.items() if key != "EDGEECG_TOKEN"}
    server = subprocess.Popen(command, stderr=log, env=env)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}; its log: {log.name}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become healthy in time")


def load(port: int, bodies: list[bytes], requests: int, concurrency: int) -> tuple[list[tuple[int, float]], float]:
    """(status, ms) of every request, and the wall time of the whole run."""
    tickets = itertools.count()
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        while (i := next(tickets)) < requests:
            start = time.perf_counter()
            try:
                connection.request("POST", "/v1/classify", body=bodies[i % len(bodies)],
                                   headers={"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError:
                status = 0  # connection failure
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=60)
            with lock:
                results.append((status, (time.perf_counter() - start) * 1e3))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--workers", type=int, help="server workers (default: the server's, one per core)")
    args = parser.parse_args()

    bodies = [p.read_bytes() for p in sorted((REPO / "examples").glob("*.jpg"))]
    baseline = serial_rate(resolve_model(args.model), bodies)
    with tempfile.NamedTemporaryFile("w+", prefix="serve-load-", suffix=".log", delete=False) as log:
        server, port = start_server(args.model, args.workers, log)
        try:
            results, wall_s = load(port, bodies, args.requests, args.concurrency)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)

    statuses = Counter(status for status, _ in results)
    ok_ms = np.array([ms for status, ms in results if status == 200])
    all_ms = np.array([ms for _, ms in results])
    rate = statuses[200] / wall_s
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores, load average "
          f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())} (client and server share them)")
    print(f"server: edgeecg serve --model {args.model} --workers {args.workers or 'default'} on {HOST}; "
          f"log {log.name}")
    print(f"requests: {len(results)} at concurrency {args.concurrency} in {wall_s:.1f} s; "
          f"status counts: {dict(sorted(statuses.items()))}")
    print(f"throughput: {rate:.1f} results/s ({len(results) / wall_s:.1f} responses/s)")
    if len(ok_ms):
        print(f"latency of results: p50 {np.percentile(ok_ms, 50):.0f} ms, p90 {np.percentile(ok_ms, 90):.0f} ms, "
              f"p99 {np.percentile(ok_ms, 99):.0f} ms (all responses: p50 {np.percentile(all_ms, 50):.0f}, "
              f"p99 {np.percentile(all_ms, 99):.0f} ms)")
    print(f"serial end-to-end rate in-process: {baseline:.1f} img/s; server / serial: {rate / baseline:.0%}")
    unexpected = sum(n for status, n in statuses.items() if status not in (200, 429))
    if unexpected:
        print(f"FAILED: {unexpected} response(s) neither a result nor a 429", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
