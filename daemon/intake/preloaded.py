"""Imported last by the fork server, once the readers and composers are imported (see
`workers.FORK_SERVER_PRELOAD`): every object they made is moved out of the garbage
collector's sight (`gc.freeze`). A worker forked from the fork server shares those pages
with it until it writes to them; without this, each collection in each worker would walk
and write to every one of them, and the shared pages would become the worker's own copies.
Nothing else imports this module."""

import gc

gc.freeze()
