"""Imported last by the fork server, once the readers and composers are imported (see
`workers.FORK_SERVER_PRELOAD`).

First the receipt's faces are cut (receipt.ReducedFaces, about a second of fontTools): every
worker forked from the fork server then finds them cut, and none cuts its own. The daemon's
own process does not pay for it either, nor wait for it.

Then what a worker's first mail would load is loaded: the word tables of the readers (issuer
names and scam families, YAML read by a parser written in Python: 30-40 ms a worker), and the
modules and codecs pypdf takes up lazily on the first PDF. A worker reads `MAILS_PER_WORKER`
mails before a fresh one takes its place, so each of them would pay for these again.

Then every object made so far is moved out of the garbage collector's sight (`gc.freeze`).
A worker forked from the fork server shares those pages with it until it writes to them;
without this, each collection in each worker would walk and write to every one of them, and
the shared pages would become the worker's own copies.

Nothing else imports this module."""

import codecs
import contextlib
import gc

import pypdf.filters  # noqa: F401  (imported by pypdf on a page's first compressed stream)

from daemon import memory
from daemon.office import receipt
from daemon.understand import issuer, scams

with contextlib.suppress(Exception):  # the full faces still work: each worker then uses them
    receipt.REDUCED.directory(receipt.FONT_DIR, now=True)

# A table that cannot be read here fails in the worker that needs it, as it would without this.
with contextlib.suppress(Exception):
    issuer.names()
with contextlib.suppress(Exception):
    scams.load()
for name in ("utf-16-be", "utf-16-le", "raw-unicode-escape"):  # pypdf's text strings
    codecs.lookup(name)

gc.collect()  # what cutting the faces left behind goes first, not frozen with the rest
memory.trim()  # and the pages it freed go back to the system: not inherited by each worker
gc.freeze()
