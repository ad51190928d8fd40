"""The one exception tree of vanthu. Library errors are translated into it once, at the boundary
of each outside system: IMAP in `intake/fetch.py`, the mail store in `intake/store.py`, the
database in `db.py`, SMTP in `outbound/send.py`, PDF and archive readers in
`understand/attachments.py` (whose failures become defects, never exceptions).

    VanthuError
    ├── ConfigError          fatal at start: exit code 78 (EX_CONFIG), every problem listed
    ├── TransientError       retry with backoff: nothing is lost while it lasts
    │   ├── MailboxError         IMAP: no connection, dropped, timed out, unexpected reply
    │   │   ├── MailboxAuthError     the server refused our login
    │   │   └── MailboxRefused       the server answered NO or BAD to a command
    │   ├── StoreError           the mail store cannot write (disk full, read-only)
    │   ├── DatabaseError        the database is locked, full, failing or cannot be opened
    │   ├── SendDeferred         SMTP 4xx or no connection: the outbox row stays pending
    │   └── SystemicFault        mail after mail fails, a known-good sample too: pause
    └── PermanentError       no retry: quarantine the message or fail the outbox row
        ├── BadMessage           a mail we cannot parse or must not process (the reason is kept)
        ├── SendRejected         SMTP 5xx: the recipient or the content was refused
        └── EmailRefused         an email that can never be sent as it is: bad headers, no
            │                    bytes, an address or bytes the SMTP library will not send
            └── RecipientRefused     a recipient that cannot be sent to, or may not be written to

At the top, `cli.main` turns any of them into a message and an exit code, never a traceback:
a ConfigError into every problem and 78, any other into one line on stderr and 1.
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
    """The IMAP server could not be reached, dropped the connection, timed out or answered
    something the client could not take."""


class MailboxAuthError(MailboxError):
    """The IMAP server refused our login. Retried like any mailbox error (a server may unlock an
    account), but reported as a refusal: a wrong password does not heal by itself."""


class MailboxRefused(MailboxError):
    """The IMAP server answered NO or BAD to a command (e.g. a folder that does not exist); the
    connection itself is still good."""


class StoreError(TransientError):
    """The mail store could not write a mail durably (disk full, read-only, a path that is not a
    folder). The IMAP checkpoint does not move, so the mail is fetched again later."""


class DatabaseError(TransientError):
    """The database could not do the work now: locked past the busy timeout, disk I/O error,
    disk full, read-only, or the file cannot be opened. The transaction was rolled back."""


class SendDeferred(TransientError):
    """The SMTP server could not take the message now (4xx or no connection)."""


class PermanentError(VanthuError):
    """Trying again will not help; a human must look."""


class BadMessage(PermanentError):
    """A mail vanthu cannot process; it is quarantined with this reason."""


class DamagedMail(BadMessage):
    """The stored copy of a mail no longer has the sha256 it was stored under: a damaged or
    replaced file is never read as if it were the mail that arrived."""


class SendRejected(PermanentError):
    """The SMTP server refused the message for good (5xx)."""


class SystemicFault(TransientError):
    """Mail after mail fails the same way and a known-good sample fails too: the system (the
    configuration, the database, the disk), not the mail, is at fault. The pipeline pauses with
    the mails kept `stored`, instead of quarantining every one of them."""


class EmailRefused(PermanentError):
    """An email that can never be sent as it is: refused by the outbox at creation (nothing is
    queued), or by the SMTP library when sending (the outbox row fails). Carries the reason."""

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
