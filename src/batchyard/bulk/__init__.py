"""The bulk job service: whole jobs of items - import things and relationships, export,
transform, embed - done in durable chunks with per-item errors and results.

    records.py     a job, its errors and results, stats     kinds.py    job types
    service.py     BulkJobs: create, cancel, redrive, read   things.py   the data imported
    chunks.py      ChunkRunner: the chunk task kind           export.py   JSON/CSV/NDJSON
    embeddings.py  the generate-embeddings type              search.py   nearest things
"""
