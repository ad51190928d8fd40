"""The standard library's modern email policies, made cheaper for the emails vanthu writes and
checks, with the same results.

The header factory of `email.policy` creates a new Python class for every header it parses or
sets (`HeaderRegistry.__getitem__` calls `type(...)`), which costs more than parsing most
headers. `Registry` makes each class once per header name. Both policies, `SMTP` that vanthu
composes with and `READER` that `check` reads an email back with, also remember the header
objects they made: most header lines of vanthu's emails are the same in every one (From, To,
MIME-Version, the parts' Content-Type and Content-Transfer-Encoding, X-Vanthu-Action), and a
header object depends only on the name and the unfolded value.
"""

from __future__ import annotations

import functools
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry
from typing import Any

# Header names are few (the emails are vanthu's own): more are made afresh every time.
_MAX_CLASSES = 256
# Values longer than this are parsed every time (a long subject is seldom seen twice).
REMEMBERED_CHARS = 1000


class Registry(HeaderRegistry):
    """The standard header registry, making each header class once per name."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._classes.clear()

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()  # the registry's own key: the class depends on nothing else
        made = self._classes.get(key)
        if made is None:
            made = super().__getitem__(name)
            if len(self._classes) < _MAX_CLASSES:
                self._classes[key] = made
        return made


_REGISTRY = Registry()


@functools.lru_cache(maxsize=1024)
def _remembered(name: str, value: str) -> Any:
    return _REGISTRY(name, value)


def remembered_header(name: str, value: str) -> Any:
    """The header object the modern policy makes of `name: value`, parsed once."""
    if len(value) > REMEMBERED_CHARS:
        return _REGISTRY(name, value)
    return _remembered(name, value)


class _Remembering(Registry):
    """The registry the policies use: its headers are the remembered ones (a policy asks
    its factory for a header's class too, to count the headers of a name)."""

    def __call__(self, name: str, value: str) -> Any:
        return remembered_header(name, value)


_REMEMBERING = _Remembering()
# Composing: the SMTP policy (CRLF line ends). A header object is never changed once made
# (setting a parameter makes a new one), so one object may stand in many emails.
SMTP = email_policy.SMTP.clone(header_factory=_REMEMBERING)
# Reading back: the modern default policy, as a receiver's parser reads the bytes.
READER = email_policy.default.clone(header_factory=_REMEMBERING)
