"""The one exception tree of vanthu. Library errors are translated into it once, at the boundary.

    VanthuError
    ├── ConfigError      fatal at start: exit code 78 (EX_CONFIG), every problem listed
    ├── TransientError   retry with backoff: the server is down, the database is busy
    │   ├── MailboxError     IMAP connection, login or protocol trouble
    │   └── SendDeferred     SMTP 4xx or connection failure: the outbox row stays pending
    └── PermanentError   no retry: quarantine the message or fail the outbox row
        ├── BadMessage       a mail we cannot parse or must not process (the reason is kept)
        ├── SendRejected     SMTP 5xx: the recipient or the content was refused
        └── EmailRefused     the outbox will not take an email: bad headers, no bytes
            └── RecipientRefused   a recipient that cannot be sent to, or may not be written to
"""

from __future__ import annotations

from dataclasses import dataclass

EX_CONFIG = 78


class VanthuError(Exception):
    """Base of every error vanthu raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One configuration or rule problem, located as `file:line: message`."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class ConfigError(VanthuError):
    """The configuration or the rules are wrong; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TransientError(VanthuError):
    """Worth trying again later."""


class MailboxError(TransientError):
    """The IMAP server could not be reached, refused us or dropped the connection."""


class SendDeferred(TransientError):
    """The SMTP server could not take the message now (4xx or no connection)."""


class PermanentError(VanthuError):
    """Trying again will not help; a human must look."""


class BadMessage(PermanentError):
    """A mail vanthu cannot process; it is quarantined with this reason."""


class SendRejected(PermanentError):
    """The SMTP server refused the message for good (5xx)."""


class SystemicFault(TransientError):
    """Mail after mail fails the same way and a known-good sample fails too: the system (the
    configuration, the database, the disk), not the mail, is at fault. The pipeline pauses with
    the mails kept `stored`, instead of quarantining every one of them."""


class EmailRefused(PermanentError):
    """An email the outbox refuses at creation; nothing is queued. Carries the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RecipientRefused(EmailRefused):
    """A recipient that cannot be sent to (malformed, not ASCII) or that the recipient policy
    does not allow for this email's purpose."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        super().__init__(f"recipient {address!r} refused: {reason}")
        self.reason = reason
