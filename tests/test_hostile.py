"""Hostile and malformed mail: a result with defects or a quarantine, in bounded time, never a
crash or a hang."""

from __future__ import annotations

import base64
import threading
import time
import zlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.config import LimitsConfig
from daemon.errors import BadMessage
from daemon.intake.workers import ReadPool, read_guarded
from daemon.understand import Reading, legacy, read
from daemon.understand.legacy import TCVN3, VNI, detect, to_unicode
from tests.hostile.attachments import plain_pdf

LIMITS = LimitsConfig()


def _mail(body: str, content_type: str = "text/plain; charset=utf-8") -> bytes:
    return (f"From: a@example.com\r\nTo: b@example.gov.vn\r\nSubject: test\r\n"
            f"Message-ID: <t@example.com>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}\r\n\r\n{body}").encode()


def many_parts(count: int) -> bytes:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(count))
    return _mail(parts + "--b--\r\n", "multipart/mixed; boundary=b")


def deeply_nested(depth: int) -> bytes:
    head = "".join(f"--n{i}\r\nContent-Type: multipart/mixed; boundary=n{i + 1}\r\n\r\n"
                   for i in range(depth))
    tail = "".join(f"--n{i}--\r\n" for i in reversed(range(depth)))
    return _mail(f"{head}--n{depth}\r\nContent-Type: text/plain\r\n\r\nhi\r\n{tail}",
                 "multipart/mixed; boundary=n0")


def with_attachment(name: str, content_type: str, encoded: str) -> bytes:
    return _mail(
        "--b\r\nContent-Type: text/plain\r\n\r\nhồ sơ đính kèm\r\n"
        f"--b\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{name}"\r\n\r\n{encoded}\r\n--b--\r\n',
        "multipart/mixed; boundary=b")


def pdf_bomb(expanded: int) -> bytes:
    """A one-page PDF whose content stream inflates to `expanded` bytes."""
    stream = zlib.compress(b" " * expanded, 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream
               + b"\nendstream"]
    return plain_pdf(objects)


def test_thousands_of_parts_are_read_up_to_the_limit() -> None:
    """30,000 MIME parts: read in bounded time, the excess listed as a defect."""
    started = time.monotonic()

    reading = read(many_parts(30_000), LIMITS)

    assert time.monotonic() - started < 20
    assert any("30001 MIME parts" in d for d in reading.mail.defects)


def test_absurd_nesting_is_a_bad_message() -> None:
    """Thousands of nested multiparts raise BadMessage (quarantine), not RecursionError."""
    with pytest.raises(BadMessage, match="nest"):
        read(deeply_nested(3000), LIMITS)


def test_bad_base64_attachment_is_withheld() -> None:
    """An attachment that is not valid base64 is listed as a defect and never forwarded."""
    reading = read(with_attachment("don.pdf", "application/pdf", "@@@not*base64@@@"), LIMITS)

    attachment = reading.mail.attachments[0]
    assert attachment.withheld == "nội dung mã hóa base64 hỏng, không kiểm tra được"


def test_pdf_decompression_bomb_is_refused() -> None:
    """A PDF whose page inflates past pypdf's limits is withheld as not checked, in bounded
    time."""
    bomb = base64.encodebytes(pdf_bomb(200_000_000)).decode()
    started = time.monotonic()

    reading = read(with_attachment("bomb.pdf", "application/pdf", bomb), LIMITS)

    assert time.monotonic() - started < 30
    withheld = reading.mail.attachments[0].withheld
    assert withheld is not None and withheld.startswith("không kiểm tra được: PDF")


HANG = b"hang: this mail stands for one that never finishes parsing"


def hanging_reader(raw: bytes, limits: LimitsConfig) -> Reading | BadMessage:
    """A parser that never returns on the HANG mail (it waits on an event nobody sets)."""
    if raw == HANG:
        threading.Event().wait()
    return read_guarded(raw, limits)


def test_pool_gives_up_on_a_hung_mail_and_goes_on() -> None:
    """A mail still being read parse_seconds after a worker took it is a BadMessage; the mails
    behind it are read again with the next batch. The verdict cannot depend on the machine's
    speed: the hung read never ends, and the clock starts only once a worker took the mail."""
    pool = ReadPool(replace(LIMITS, parse_seconds=2, workers=1), reader=hanging_reader)
    fine = _mail("Kính gửi Sở Xây dựng")
    try:
        first = pool.read_all([HANG, fine])
        second = pool.read_all([fine])
    finally:
        pool.close()

    assert isinstance(first[0], BadMessage) and "longer than 2 s" in str(first[0])
    assert first[1] is None  # not read this time: read again with the next batch
    assert isinstance(second[0], Reading)


def test_pool_start_up_does_not_count_against_the_first_mail() -> None:
    """A limit shorter than spawning the pool takes still reads an ordinary mail: the clock
    starts when a worker takes the mail, not when it was queued."""
    pool = ReadPool(replace(LIMITS, parse_seconds=1, workers=1))
    try:
        got = pool.read_all([_mail("Kính gửi Sở Xây dựng")])
    finally:
        pool.close()

    assert isinstance(got[0], Reading)


def test_a_parser_exception_is_a_bad_message_in_the_pool_and_inline() -> None:
    """Whatever the parser raises becomes a BadMessage, the same with or without workers."""
    pool = ReadPool(replace(LIMITS, workers=1), reader=raising_reader)
    try:
        pooled = pool.read_all([b"x"])
    finally:
        pool.close()

    inline = raising_reader(b"x", LIMITS)

    assert isinstance(pooled[0], BadMessage) and "boom" in str(pooled[0])
    assert isinstance(inline, BadMessage) and str(inline) == str(pooled[0])


def broken_parser(raw: bytes, limits: LimitsConfig) -> Reading:
    """A parser that fails with an error nobody planned for."""
    raise KeyError("boom")


def raising_reader(raw: bytes, limits: LimitsConfig) -> Reading | BadMessage:
    """The guarded reader around a parser that raises."""
    return read_guarded(raw, limits, parse=broken_parser)


def test_legacy_tcvn3_and_vni_text_is_converted() -> None:
    """Old byte-font text is detected and converted; real Unicode is left alone."""
    tcvn3 = "Céng hoµ x· héi chñ nghÜa ViÖt Nam. §éc lËp - Tù do - H¹nh phóc"
    vni = "Coäng hoøa xaõ hoäi chuû nghóa Vieät Nam. Ñoäc laäp - Töï do - Haïnh phuùc"
    unicode_text = "Cộng hòa xã hội chủ nghĩa Việt Nam. Độc lập - Tự do - Hạnh phúc"

    assert to_unicode(tcvn3) == (unicode_text.replace("hòa", "hoà"), "tcvn3")
    assert to_unicode(vni) == (unicode_text, "vni")
    assert to_unicode(unicode_text) == (unicode_text, None)


def _detect_by_counting(text: str) -> str | None:
    """What `detect` decides, written as plainly as it reads: every letter counted first."""
    letters = sum(c.isalpha() for c in text)
    if letters < 20 or legacy._VIETNAMESE.search(text):
        return None
    vni = len(legacy._VNI_SIGNS.findall(text))
    tcvn3 = sum(c in legacy._TCVN3_ONLY for c in text)
    if vni >= max(3, letters * 0.03) and vni >= tcvn3:
        return "vni"
    if tcvn3 >= max(3, letters * 0.03):
        return "tcvn3"
    return None


_LEGACY_PIECES = st.sampled_from([
    "Céng hoµ x· héi ", "Coäng hoøa xaõ ", "Cộng hòa ", "abc ", "¹", "²", "¼", "½", "µ",
    "oø", "aâ", "AÊ", "ôø", "\u00ad", "1", " ", "\n", "Ö", "ñ", "ê", "x" * 30])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_LEGACY_PIECES, st.text(max_size=8)), max_size=60).map("".join))
def test_legacy_detection_decides_as_counting_every_letter_would(text: str) -> None:
    """`detect` looks for Unicode's own letters first and counts letters only when there are
    enough signs of a legacy font; it decides as the plain count does, on any text."""
    assert detect(text) == _detect_by_counting(text)


def test_legacy_tables_round_trip() -> None:
    """Every Vietnamese letter written in TCVN3 or VNI converts back to itself."""
    letters = "".join(sorted({*TCVN3.values()} - {"Ă", "Â", "Đ", "Ê", "Ô", "Ơ", "Ư"}))
    reverse_tcvn3 = {v: k for k, v in TCVN3.items() if k != "\u00ad"} | {"ư": "\u00ad"}
    encoded = "".join(reverse_tcvn3[c] for c in letters)
    reverse_vni = {v: k for k, v in VNI.items()}
    vni_encoded = " ".join(reverse_vni[c] for c in sorted(reverse_vni))

    assert detect(encoded * 2) == "tcvn3"
    assert to_unicode(encoded * 2)[0] == letters * 2
    assert to_unicode(vni_encoded)[0] == " ".join(sorted(reverse_vni))
