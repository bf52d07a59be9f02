"""Without the batchyard[otel] extra (no OpenTelemetry API), adds and flushes work as
ever and nothing is traced: checked in a real process that cannot import opentelemetry."""

from __future__ import annotations

import json
import subprocess
import sys

from batchyard import Yard

CHILD = """
import json, sys
sys.modules["opentelemetry"] = None   # as if the extra were not installed
from batchyard import Yard

yard = Yard(sys.argv[1])
seen = []

@yard.handler("collect")
def collect(items, ctx):
    seen.append(items)

yard.add_items("ev", [1], max_batch_size=3, on_flush="collect")
yard.add_items("ev", [2, 3], max_batch_size=3, on_flush="collect")
yard.run_worker(wait=False)
with yard.store.transaction(write=False) as tx:
    traces = [r["trace_context"] for r in tx.all("SELECT trace_context FROM batchyard_items")]
print(json.dumps({"seen": seen, "traces": traces,
                  "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry")
                                   and sys.modules[m] is not None)}))
"""


def test_adds_and_flushes_work_without_the_extra(store_url):
    Yard(store_url).close()  # migrated before the child runs
    done = subprocess.run(
        [sys.executable, "-c", CHILD, store_url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"seen": [[1, 2, 3]], "traces": [None, None, None], "loaded": []}
