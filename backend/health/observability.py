"""Structured (JSON) logs carrying a request id, and the app's own Prometheus metrics."""

from __future__ import annotations

import contextvars
import json
import logging
import uuid

from prometheus_client import Gauge, Histogram

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

PROMPT_ROUND_TRIP = Histogram(
    "seganypet_prompt_round_trip_seconds", "Prompt received to mask sent, per engine, measured by the web process",
    ["engine"], buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30),
)
PROMPT_ENGINE = Histogram(
    "seganypet_prompt_engine_seconds", "Engine time of a prompt, as reported by the worker", ["engine"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
PROMPT_QUEUE_DEPTH = Gauge("seganypet_prompt_queue_depth", "Prompts waiting in the shared gpu queue")


class RequestIdMiddleware:
    """Takes X-Request-ID from the proxy (or makes one), logs with it and returns it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Only what the code logs goes out: we log ids, never patient data."""

    EXTRA_FIELDS = ("request_id", "session", "seq", "scan", "engine", "status_code")

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        for name in self.EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, "-"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
