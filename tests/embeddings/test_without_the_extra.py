"""Without the batchyard[embeddings] extra, a generate-embeddings job is refused at once
with a message naming the extra, and nothing is stored: checked in a real process that
cannot import sentence_transformers."""

from __future__ import annotations

import json
import subprocess
import sys

from batchyard import Yard

CHILD = """
import json, sys
sys.modules["sentence_transformers"] = None   # as if the extra were not installed
from fastapi.testclient import TestClient
from batchyard import ConfigError, Yard
from batchyard.http import create_app

yard = Yard(sys.argv[1])
out = {}
try:
    yard.create_batch_job("generate-embeddings", [{"ns": "n", "id": "a"}])
except ConfigError as exc:
    out["error"] = [type(exc).__name__, str(exc)]
with TestClient(create_app(yard, worker=False)) as client:
    response = client.post("/batch", json={"type": "generate-embeddings",
                                           "input": {"ns": "n"}})
    out["http"] = [response.status_code, response.json()]
out["loaded"] = sorted(m for m in ("torch", "sentence_transformers", "numpy")
                       if sys.modules.get(m) is not None)
print(json.dumps(out))
"""


def test_creating_a_job_without_the_extra_fails_at_once_naming_it(store_url):
    Yard(store_url).close()  # migrated, so that the child's refusal is the only thing seen
    done = subprocess.run(
        [sys.executable, "-c", CHILD, store_url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])

    kind, message = out["error"]
    assert kind == "MissingExtra" and "batchyard[embeddings]" in message
    assert "pip install torch==2.13.0" in message
    status, body = out["http"]
    assert status == 501 and body["error"] == "MissingExtra"
    assert "batchyard[embeddings]" in body["detail"]
    assert out["loaded"] == []  # the check imports no model machinery
    with Yard(store_url) as yard:
        assert yard.list_batch_jobs() == []
        with yard.store.transaction(write=False) as tx:
            assert tx.one("SELECT COUNT(*) AS n FROM batchyard_tasks")["n"] == 0
