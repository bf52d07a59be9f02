"""Log lines: JSON on request, and never a secret in them."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import httpx
import orjson

from batchyard.logs import JsonFormatter, Redactor, TextFormatter
from tests.servers import free_port, wait_for_http

SECRETS = (
    "postgresql://app:hunter2@db.internal/yard",
    "Authorization: Bearer tok-123",
    "token tok-456",
)


def log_through(formatter: logging.Formatter, **extra) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("batchyard.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting to %s with %s and %s", *SECRETS, extra=extra)
        try:
            raise RuntimeError("failed: postgresql://app:hunter2@db.internal/yard")
        except RuntimeError:
            logger.exception("store down")
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_json_lines_carry_fields_and_mask_secrets():
    text = log_through(JsonFormatter(Redactor(["tok-456"])), batch_id="ev::0")
    first, second = (orjson.loads(line) for line in text.splitlines())
    assert first["level"] == "warning" and first["logger"] == "batchyard.test-logs"
    assert first["batch_id"] == "ev::0" and first["time"].endswith("+00:00")
    assert "postgresql://app:***@db.internal/yard" in first["message"]
    assert "Bearer ***" in first["message"] and "token ***" in first["message"]
    assert "RuntimeError" in second["exception"]
    for secret in ("hunter2", "tok-123", "tok-456"):
        assert secret not in text


def test_text_lines_mask_secrets_too():
    text = log_through(TextFormatter(Redactor(["tok-456"])))
    assert "WARNING batchyard.test-logs: connecting to postgresql://app:***@" in text
    for secret in ("hunter2", "tok-123", "tok-456"):
        assert secret not in text


def test_serve_logs_json_without_the_api_token(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "BATCHYARD_STORE": f"sqlite:///{tmp_path}/yard.db",
        "BATCHYARD_API_TOKEN": "tok-very-secret",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchyard",
            "serve",
            "--port",
            str(port),
            "--no-worker",
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health")
        # a token where it does not belong: in a URL, which the access log prints
        httpx.get(f"{base}/health?token=tok-very-secret")
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line["logger"] == "uvicorn.access" for line in lines)
    assert any("token=***" in line["message"] for line in lines)
    assert "tok-very-secret" not in stderr
