"""Intake: watch the IMAP folders (fetch), store every mail durably exactly once (store),
and read stored mail in worker processes with time and memory limits (workers).
"""
