"""Ready-made `get_next_batch` sources for the table iterator.

Each function registers a handler under `name` and returns the name, to be passed as
``get_next_batch``; the user writes no pagination.

`sql_keyset` pages through a table of the yard's own store by a compound key (`keyset`).
`ndjson_file` and `csv_file` read a file from a byte offset kept in the cursor (`files`).
Both can be cut into ranges for a job started with ``parallelism``: key ranges of equal row
counts, or byte ranges cut at record starts (`ranges`).
"""

from batchyard.sources.files import csv_file, ndjson_file
from batchyard.sources.keyset import sql_keyset

__all__ = ["csv_file", "ndjson_file", "sql_keyset"]
