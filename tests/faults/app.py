"""The application the outage tests run under `batchyard worker` and `batchyard serve`: its
handler appends each call to RECORD_PATH."""

from __future__ import annotations

import json
import os

from batchyard import Yard

yard = Yard(os.environ["BATCHYARD_STORE"])


@yard.handler("record")
def record(items, ctx):
    with open(os.environ["RECORD_PATH"], "a") as out:
        out.write(json.dumps({"batch_id": ctx.batch_id, "items": items}) + "\n")
