"""Structured JSON logs (no PHI: ids and hashes only) and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["JSONFormatter", "Metrics", "configure_logging", "observe_middleware"]

access_log = logging.getLogger("telegate.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class JSONFormatter(logging.Formatter):
    """One JSON object per line. Only fields passed in ``extra={"fields": {...}}`` are added,
    so no request body or free text reaches the log by accident."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, separators=(",", ":"))


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@dataclass(frozen=True, slots=True)
class Metrics:
    """The gateway's metrics, in a registry of its own (one per app, so tests can run many)."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    ledger_size: Gauge
    append_latency: Histogram
    commit_batch: Histogram
    witness_size: Gauge
    witness_lag: Gauge
    witness_failures: Counter
    witness_alarms: Counter
    witnessed_size: Gauge
    witness_latency: Histogram

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter(
                "telegate_http_requests",
                "HTTP requests",
                ["method", "route", "status"],
                registry=r,
            ),
            latency=Histogram(
                "telegate_http_request_duration_seconds",
                "HTTP request latency",
                ["method", "route"],
                registry=r,
            ),
            ledger_size=Gauge("telegate_ledger_size", "Entries in the ledger", registry=r),
            append_latency=Histogram(
                "telegate_ledger_append_seconds",
                "Time from append to a durable, signed receipt",
                buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=r,
            ),
            commit_batch=Histogram(
                "telegate_ledger_commit_entries",
                "Entries per group commit",
                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
                registry=r,
            ),
            # Witnessing (gateway.witnessing). Labels are witness key names from the config:
            # bounded, and never anything a client sent.
            witness_size=Gauge(
                "telegate_witness_cosigned_size",
                "Largest checkpoint size each witness has cosigned",
                ["witness"],
                registry=r,
            ),
            witness_lag=Gauge(
                "telegate_witness_lag_entries",
                "Ledger size minus the size each witness has cosigned",
                ["witness"],
                registry=r,
            ),
            witness_failures=Counter(
                "telegate_witness_failures",
                "Failed submissions to a witness, by kind (network, status code, alarm)",
                ["witness", "kind"],
                registry=r,
            ),
            witness_alarms=Counter(
                "telegate_witness_alarms",
                "Refusals that may mean a fork or rollback of this log (403, 404, 422, ...)",
                ["witness", "reason"],
                registry=r,
            ),
            witnessed_size=Gauge(
                "telegate_witnessed_size",
                "Size of the newest checkpoint cosigned by the witness quorum (k of n)",
                registry=r,
            ),
            witness_latency=Histogram(
                "telegate_witness_cosign_seconds",
                "From a new checkpoint being picked for submission to a witness's cosignature",
                ["witness"],
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=r,
            ),
        )


def _route(request: web.Request) -> str:
    # The route template, never the concrete path: bounded label cardinality.
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def observe_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        rid = request.headers.get("X-Request-Id", "")
        if not rid or len(rid) > 64 or not rid.isprintable():
            rid = uuid.uuid4().hex
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            resp.headers["X-Request-Id"] = rid
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            took = time.perf_counter() - start
            route = _route(request)
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(took)
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": rid,
                        "method": request.method,
                        "route": route,
                        "status": status,
                        "ms": round(took * 1000, 3),
                    }
                },
            )

    return middleware
