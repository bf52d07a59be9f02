"""How a failure of user code is told: one log line with its traceback, and a traceback short
enough to keep in the books.

Every failed attempt of a flush, an iterator step, an aggregator run or a bulk-job chunk is
logged once through `log_failure`: WARNING while it will be retried, ERROR when it goes
dead or failed - so an operator can alert on ERROR alone. The ids, the attempt, the handler
and the duration go in as fields (``extra=``), so ``--log-format json`` writes them as keys.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

# what a history row keeps of a traceback: enough for the cause, never a megabyte per attempt
MAX_TRACEBACK_CHARS = 8 * 1024
_HEAD_CHARS = 1024
_CUT = "\n  ...\n"


def traceback_text(exc: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """The formatted traceback of `exc`, at most `limit` characters: past it, the head (where
    the call came from) and the end (the raising frame and the exception, where the cause
    is) are kept and the middle is cut."""
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    if len(text) <= limit:
        return text
    head = min(_HEAD_CHARS, limit // 4)
    return text[:head] + _CUT + text[-(limit - head - len(_CUT)) :]


def error_text(exc: BaseException) -> str:
    """The one-line ``Type: message`` kept as a failure's error."""
    return f"{type(exc).__name__}: {exc}"


def log_failure(
    log: logging.Logger, what: str, exc: BaseException, *, final: bool, **fields: Any
) -> None:
    """Log one failed attempt of `what` (``"flush of events::3"``) with the traceback of
    `exc`: ERROR when `final` (dead, failed), WARNING while it will be retried. `fields`
    (ids, attempt, handler, duration_seconds) are written into the line and passed as
    extras."""
    level = logging.ERROR if final else logging.WARNING
    told = ", ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
    fate = "gave up" if final else "will retry"
    log.log(
        level,
        "%s failed (%s; %s): %s",
        what,
        told,
        fate,
        error_text(exc),
        exc_info=exc,
        extra={"final": final, **fields},
    )
