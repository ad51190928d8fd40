"""`[limits] max_depth`: a mail is read down to that many MIME levels (each multipart, and each
mail forwarded inside one, is a level) and no further; a forwarded mail is read once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from daemon import config
from daemon.config import LimitsConfig
from daemon.understand.parse import parse

HEAD = ("From: Văn phòng <vp@example.gov.vn>\r\nTo: vanthu@example.gov.vn\r\n"
        "Subject: test\r\nMessage-ID: <{n}@example.gov.vn>\r\nMIME-Version: 1.0\r\n")
TEXT = "Content-Type: text/plain; charset=utf-8\r\n\r\nDEEPEST {n}\r\n"
DEPTH_DEFECT = "nested deeper than"


def nested(leaf: int) -> bytes:
    """A mail whose text lies `leaf` multipart levels below its root (1: a multipart holding
    the text)."""
    entity = TEXT.format(n=leaf)
    for level in reversed(range(leaf)):
        entity = (f"Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n"
                  f"--b{level}\r\n{entity}--b{level}--\r\n")
    return (HEAD.format(n=leaf) + entity).encode()


def forwarded(times: int) -> bytes:
    """A mail forwarded `times` times, each forward a multipart with a note and the previous
    mail as a message/rfc822 attachment; the first mail, a multipart too, carries the text and
    `don.txt`. Each forward adds two levels (its multipart, then the forwarded mail), so the
    text lies 2 * `times` + 1 levels below the root."""
    entity = (f"{HEAD.format(n=0)}Content-Type: multipart/mixed; boundary=first\r\n\r\n"
              f"--first\r\n{TEXT.format(n=times)}--first\r\n"
              "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=don.txt\r\n"
              "\r\nđơn đề nghị\r\n--first--\r\n")
    for level in range(times):
        entity = (f"{HEAD.format(n=level + 1)}Content-Type: multipart/mixed; boundary=f{level}"
                  f"\r\n\r\n--f{level}\r\nContent-Type: text/plain\r\n\r\nnote {level}\r\n"
                  f"--f{level}\r\nContent-Type: message/rfc822\r\n"
                  f"Content-Disposition: attachment; filename=fw{level}.eml\r\n\r\n"
                  f"{entity}\r\n--f{level}--\r\n")
    return entity.encode()


def _read(raw: bytes, max_depth: int) -> tuple[bool, bool]:
    """Whether the deepest text was read, and whether a depth defect was named."""
    mail = parse(raw, replace(LimitsConfig(), max_depth=max_depth))
    return "DEEPEST" in mail.body, any(DEPTH_DEFECT in d for d in mail.defects)


@pytest.mark.parametrize("limit", [1, 2, 3, 10])
def test_multipart_nesting_is_read_down_to_the_limit(limit: int) -> None:
    """A text exactly `max_depth` levels down is read; one level more is not, and the mail
    names that as a defect."""
    assert _read(nested(limit), limit) == (True, False)
    assert _read(nested(limit + 1), limit) == (False, True)


@pytest.mark.parametrize("times", [1, 2, 4])
def test_forwarded_mails_are_read_down_to_the_limit(times: int) -> None:
    """A mail forwarded `times` times is read when its text is exactly `max_depth` levels down
    (two per forward, one for the first mail's multipart), and not when it is one level more."""
    depth = 2 * times + 1

    assert _read(forwarded(times), depth) == (True, False)
    assert _read(forwarded(times), depth - 1) == (False, True)


def test_a_forwarded_mail_is_read_once() -> None:
    """The text and the attachment of a forwarded mail appear once, after the forward's note,
    and the forwarded .eml itself is not an attachment."""
    mail = parse(forwarded(2), LimitsConfig())

    assert [a.name for a in mail.attachments] == ["don.txt"]
    assert mail.body.count("DEEPEST") == 1
    assert mail.body.index("note 1") < mail.body.index("note 0") < mail.body.index("DEEPEST")


def test_max_depth_in_config_toml_reaches_the_parser(tmp_path: Path) -> None:
    """`[limits] max_depth` written in config.toml is the limit the parser applies."""
    text = "[limits]\nmax_depth = 2\n"
    cfg = config.parse({"limits": {"max_depth": 2}}, file="config.toml", text=text,
                       base=tmp_path)

    assert "DEEPEST" in parse(nested(2), cfg.limits).body
    assert "DEEPEST" not in parse(nested(3), cfg.limits).body
