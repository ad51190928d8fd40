"""Imported last by the fork server, once the readers and composers are imported (see
`workers.FORK_SERVER_PRELOAD`).

First the receipt's faces are cut (receipt.ReducedFaces, about a second of fontTools): every
worker forked from the fork server then finds them cut, and none cuts its own. The daemon's
own process does not pay for it either, nor wait for it.

Then every object made so far is moved out of the garbage collector's sight (`gc.freeze`).
A worker forked from the fork server shares those pages with it until it writes to them;
without this, each collection in each worker would walk and write to every one of them, and
the shared pages would become the worker's own copies.

Nothing else imports this module."""

import contextlib
import gc

from daemon import memory
from daemon.office import receipt

with contextlib.suppress(Exception):  # the full faces still work: each worker then uses them
    receipt.REDUCED.directory(receipt.FONT_DIR, now=True)

gc.collect()  # what cutting the faces left behind goes first, not frozen with the rest
memory.trim()  # and the pages it freed go back to the system: not inherited by each worker
gc.freeze()
