"""Outbound: compose every email (compose), the outbox's one writer (outbox), the one
recipient policy (recipients) and the SMTP sender (send).
"""
