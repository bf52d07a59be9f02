"""Logging setup for the `batchyard` command: plain text or one JSON object per line.

batchyard logs through the standard `logging` module only (loggers named ``batchyard.*``);
this module is what `serve` and `worker` use to point them somewhere. Whatever the format,
secrets never reach the output: passwords inside URLs, bearer tokens, and the values given
as `secrets` (the API tokens) are masked in the final text, tracebacks included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("text", "json")
MASK = "***"

# user:password@ in any scheme://, and the value after "Bearer"
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^/\s:@]*:)[^@\s/]+@")
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)[^\s\"',;]+")

# attributes every LogRecord has; anything else was passed with `extra=` and is data
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class Redactor:
    """Masks secrets in a piece of text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so a secret that contains another is masked whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
        return _BEARER.sub(rf"\g<head>{MASK}", text)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, secrets masked."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    exception if any, and every field passed with ``extra=``; secrets masked."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        return self.redact(orjson.dumps(entry, default=str).decode())


def setup_logging(
    level: str = "info", log_format: str = "text", secrets: Iterable[str] = ()
) -> None:
    """Send every log record to stderr in `log_format` (``text`` or ``json``) from `level`
    up, masking `secrets`. Replaces handlers set up before (by us or by uvicorn)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    redact = Redactor(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(redact) if log_format == "json" else TextFormatter(redact))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # uvicorn's loggers are left unconfigured (log_config=None) and reach the root here
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # the connection pool warns at every failed reconnect attempt; batchyard says once
    # when the store went away and once when it is back (batchyard.supervision)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
