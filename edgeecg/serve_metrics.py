"""The server's Prometheus metrics: requests, errors, latency per stage, queue depth.

Each app gets its own registry, so several apps in one process (tests) never
share counters, and /metrics shows only what this server did.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# seconds; a scan takes ~30 ms end to end on a laptop CPU, a digitized page a few hundred
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters and histograms of one server."""

    def __init__(self, queue_depth: Callable[[], int], busy: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("edgeecg_requests", "HTTP requests answered", ["endpoint", "status"],
                                registry=self.registry)
        self.errors = Counter("edgeecg_errors", "requests answered with an error, by reason",
                              ["endpoint", "reason"], registry=self.registry)
        self.latency = Histogram("edgeecg_request_seconds", "time from request to response",
                                 ["endpoint"], buckets=BUCKETS, registry=self.registry)
        self.stages = Histogram("edgeecg_stage_seconds", "time spent in each processing stage",
                                ["stage"], buckets=BUCKETS, registry=self.registry)
        depth = Gauge("edgeecg_queue_depth", "jobs waiting for a worker", registry=self.registry)
        depth.set_function(queue_depth)
        running = Gauge("edgeecg_workers_busy", "workers running a job now", registry=self.registry)
        running.set_function(busy)

    def observe_stages(self, ms: dict[str, float]) -> None:
        """Record a result's per-stage milliseconds (the `ms` of an inference result)."""
        for stage, value in ms.items():
            if stage != "total":
                self.stages.labels(stage).observe(value / 1e3)
