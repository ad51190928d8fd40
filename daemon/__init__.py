"""vanthu — the electronic mailroom (văn thư) of a Vietnamese government agency.

A mail moves through the stages named by the modules: fetch → store → understand → register →
route → send, with the jobs that run on a clock beside them.
"""

__version__ = "0.1.0"
