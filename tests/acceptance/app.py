"""An application for the CLI tests: a yard on BATCHYARD_STORE whose handler records calls."""

from __future__ import annotations

import json
import os
import time

from batchyard import Yard

yard = Yard(os.environ["BATCHYARD_STORE"])


@yard.handler("record")
def record(items, ctx):
    time.sleep(float(os.environ.get("HANDLER_SLEEP", "0")))
    with open(os.environ["RECORD_PATH"], "a") as out:
        out.write(json.dumps({"batch_id": ctx.batch_id, "items": items}) + "\n")


@yard.transform("upper")
def upper(item):
    return {"text": str(item["text"]).upper()}


def fail_in_the_sink(items):
    raise ConnectionError(f"the sink refused {len(items)} items")


@yard.handler("explode")
def explode(items, ctx):
    fail_in_the_sink(items)
