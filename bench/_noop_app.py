"""A yard with a no-op handler, for benchmark worker processes."""

import os

from batchyard import Yard

yard = Yard(os.environ["BATCHYARD_STORE"])
yard.handler("noop")(lambda items, ctx: None)
