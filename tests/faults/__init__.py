"""The fault suite's tools (issue 12, item 9): a TCP fault proxy, a faulty SMTP server, the
invariants checked after every fault, the daemon run as a subprocess, and file-system faults
(a small tmpfs, a read-only bind mount, a database held locked by another process).

Everything listens on loopback only and stops with the test that started it.
"""
