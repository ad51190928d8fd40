"""A PDF's active content is found on its parsed objects, never by searching its bytes: a
scanned page whose JPEG data happens to hold "/JS", "/JavaScript" or "/OpenAction" is an
ordinary scan, and the same scan with a real /OpenAction JavaScript action is withheld."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from daemon.config import LimitsConfig
from daemon.understand import attachments
from tests.hostile.attachments import plain_pdf

WORDS = b"/OpenAction << /S /JavaScript /JS (app.alert(1)) >> /AA /Launch"


def jpeg(inside: bytes, size: int = 40) -> bytes:
    """A real JPEG of a grey page, with `inside` in a comment segment (COM) of its data and
    after its end marker, where cameras and scanners put their own bytes."""
    out = io.BytesIO()
    Image.new("RGB", (size, size), (200, 200, 200)).save(out, "JPEG")
    data = out.getvalue()
    comment = b"\xff\xfe" + (len(inside) + 2).to_bytes(2, "big") + inside
    return data[:2] + comment + data[2:] + inside


def scan(image: bytes, catalog: bytes = b"", extra: tuple[bytes, ...] = ()) -> bytes:
    """A one-page PDF whose page is `image` and nothing else (no text layer)."""
    content = b"q 595 0 0 842 0 0 cm /Im1 Do Q"
    return plain_pdf([
        b"<< /Type /Catalog /Pages 2 0 R " + catalog + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /XObject << /Im1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width 40 /Height 40 /ColorSpace /DeviceRGB "
        b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n" % len(image)
        + image + b"\nendstream",
        *extra,
    ])


def read(data: bytes) -> attachments.AttachmentReading:
    return attachments.read("ban-quet.pdf", "application/pdf", data, LimitsConfig())


def test_words_of_actions_inside_the_image_data_are_not_active_content() -> None:
    data = scan(jpeg(WORDS))
    assert all(word in data for word in (b"/JS", b"/JavaScript", b"/OpenAction"))

    reading = read(data)

    assert reading.withheld is None
    assert reading.unread == ("PDF không có lớp chữ (bản quét)",)


def test_the_same_scan_with_a_real_openaction_javascript_is_withheld() -> None:
    data = scan(jpeg(WORDS), b"/OpenAction 6 0 R",
                (b"<< /S /JavaScript /JS (app.alert(1)) >>",))

    reading = read(data)

    assert reading.withheld is not None
    assert reading.withheld.startswith("PDF có nội dung tự chạy")
    assert "OpenAction" in reading.withheld and "JavaScript" in reading.withheld


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([b"/JS", b"/JavaScript", b"/OpenAction", b"/AA", b"/Launch",
                                 b"/EmbeddedFile", b"/XFA", b"<<", b">>", b"(", b" "]),
                min_size=1, max_size=30).map(b"".join))
def test_any_action_words_in_the_image_data_are_ignored(inside: bytes) -> None:
    reading = read(scan(jpeg(inside)))
    assert reading.withheld is None, reading.withheld
