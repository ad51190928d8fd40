"""Confidentiality marks wherever senders put them, and look-alikes that are no marks.

A family, generated: each placement of a mark (the textbook stamp, the subject, the issuer's
line, spaced letters, a label, far below a long header, page three) in each container (the
mail's body, a PDF, a DOCX body or page header, a second PDF after a plain cover letter, a PDF
inside a ZIP) must give a notice without content: no forward, and the document's secret
sentence in no email. A scan no one can read on an official mail is possibly confidential,
with the same result. Look-alike words in running text change nothing: forwarded as usual.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from functools import partial

from fpdf import FPDF

from daemon.office.receipt import FONT_DIR
from tests.conftest import AUTHSERV_ID
from tests.hostile import Attack, Outcome

SECRET = "Phương án di dời kho vũ khí số 7 về xã Tân Hòa"  # must never leave by email
SENDER = "vanthu@tayninh.gov.vn"


def document(mark: str = "", where: str = "stamp", pad: int = 0) -> str:
    """A công văn whose confidentiality `mark` sits at `where`; `pad` blank-ish lines push
    everything below the top of the page."""
    issuer = "ỦY BAN NHÂN DÂN\nTỈNH TÂY NINH"
    lines = ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc"]
    lines += [f"Trang thông tin điện tử số {i}" for i in range(pad)]
    if where == "stamp":
        lines += [issuer, mark]
    elif where == "issuer-line-wide":
        lines += ["ỦY BAN NHÂN DÂN", f"TỈNH TÂY NINH          {mark}"]
    elif where == "issuer-line-tight":
        lines += ["ỦY BAN NHÂN DÂN", f"TỈNH TÂY NINH {mark}"]
    elif where == "labelled":
        lines += [issuer, f"Độ mật: {mark.capitalize()}"]
    elif where == "spaced":
        lines += [issuer, "  ".join(" ".join(word) for word in mark.split())]
    else:
        lines += [issuer]
    lines += ["Số: 1234/UBND-NC", "V/v phương án bảo vệ mục tiêu quan trọng",
              "Tây Ninh, ngày 09 tháng 11 năm 2026", "", "Kính gửi: Sở Xây dựng tỉnh Tây Ninh.",
              f"Nội dung: {SECRET}.", "Nơi nhận: như trên."]
    if where == "far-below":
        lines += [f"Đoạn {i}: các cơ quan phối hợp thực hiện." for i in range(120)]
        lines += [mark]
    return "\n".join(lines)


def pdf(text: str, pages: int = 1, page_of_text: int = 1, image_only: bool = False) -> bytes:
    """A PDF with `text` on page `page_of_text` (other pages hold filler), or a scan: a
    picture of a page and no text at all."""
    doc = FPDF(format="A4")
    doc.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    doc.set_font("DejaVu", size=11)
    for page in range(1, pages + 1):
        doc.add_page()
        if image_only:
            doc.set_fill_color(200, 200, 200)
            doc.rect(20, 20, 170, 250, style="F")  # no text object at all: like a scan
            continue
        body = text if page == page_of_text else f"Phụ lục trang {page}: số liệu thống kê."
        for line in body.splitlines():
            doc.multi_cell(0, 6, line or " ", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


def docx(body: str, header: str = "") -> bytes:
    """A minimal real DOCX: the body in word/document.xml, `header` in word/header1.xml."""
    def paragraphs(text: str) -> str:
        from xml.sax.saxutils import escape
        return "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{escape(line)}</w:t></w:r></w:p>"
                       for line in text.splitlines())

    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.'
            'openxmlformats.org/package/2006/content-types"><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
            'document.main+xml"/></Types>'))
        archive.writestr("word/document.xml",
                         f"<w:document {ns}><w:body>{paragraphs(body)}</w:body></w:document>")
        if header:
            archive.writestr("word/header1.xml", f"<w:hdr {ns}>{paragraphs(header)}</w:hdr>")
    return out.getvalue()


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


Files = list[tuple[str, str, bytes]]  # name, content type, bytes


def mail(subject: str, body: str, files: Files | None = None, sender: str = SENDER) -> bytes:
    """An authenticated mail from `sender` with `files` attached."""
    files = files or []
    domain = sender.rpartition("@")[2]
    msg = EmailMessage(policy=SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d={domain}; "
                                     f"dmarc=pass header.from={domain}")
    msg["From"] = sender
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = f"<{abs(hash((subject, body, len(files))))}@{domain}>"
    msg.set_content(body)
    for name, content_type, data in files:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def announced_only(outcome: Outcome) -> None:
    """A notice without content went out, no forward, and the secret is in no email."""
    purposes = outcome.purposes()
    assert "forward" not in purposes and "assign" not in purposes, purposes
    assert "notify" in purposes, (purposes, outcome.row.state, outcome.row.last_error)
    for purpose in set(purposes):
        assert SECRET not in outcome.text(purpose), purpose
        assert SECRET.upper() not in outcome.text(purpose).upper(), purpose


def forwarded(outcome: Outcome) -> None:
    """An ordinary document: forwarded with its content."""
    assert "forward" in outcome.purposes(), (outcome.purposes(), outcome.row.last_error)
    assert "notify" not in outcome.purposes()


COVER = "Kính gửi Văn thư Sở, Ủy ban nhân dân tỉnh gửi văn bản đính kèm."
PLAIN_COVER = document(where="none").replace(SECRET, "Đề nghị các đơn vị phối hợp")

PLACEMENTS = ("stamp", "issuer-line-wide", "issuer-line-tight", "labelled", "spaced",
              "far-below")
MARKS = {"mat": "MẬT", "toi-mat": "TỐI MẬT", "tuyet-mat": "TUYỆT MẬT"}

CONTAINERS: dict[str, Callable[[str], bytes]] = {
    "body": lambda text: mail("Công văn 1234/UBND-NC", text),
    "pdf": lambda text: mail("Công văn 1234/UBND-NC", COVER,
                             [("1234-UBND-NC.pdf", "application/pdf", pdf(text))]),
    "docx": lambda text: mail("Công văn 1234/UBND-NC", COVER, [(
        "1234-UBND-NC.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        docx(text))]),
    "second-pdf": lambda text: mail("Công văn 1234/UBND-NC", COVER, [
        ("cong-van-chuyen.pdf", "application/pdf", pdf(PLAIN_COVER)),
        ("tai-lieu-kem-theo.pdf", "application/pdf", pdf(text))]),
    "zip": lambda text: mail("Công văn 1234/UBND-NC", COVER, [
        ("ho-so.zip", "application/zip", zipped("1234-UBND-NC.pdf", pdf(text)))]),
}


def _family() -> list[Attack]:
    found: list[Attack] = []
    for container, build in CONTAINERS.items():
        for where in PLACEMENTS:
            for key, mark in MARKS.items():
                if key != "toi-mat" and where not in ("stamp", "labelled"):
                    continue  # every placement with one level; every level in two places
                found.append(Attack(
                    name=f"secret-{key}-{where}-in-{container}",
                    tries=f"mark {mark!r} placed {where} in the {container}",
                    shows="notice without content; the document goes nowhere by email",
                    build=partial(build, document(mark, where)),
                    check=announced_only))
    return found


def _forwarded_marked_mail() -> bytes:
    """A colleague forwards, as an attached mail, a document whose only mark was the
    original mail's subject."""
    inner = EmailMessage(policy=SMTP)
    inner["From"] = "vanphong@tayninh.gov.vn"
    inner["To"] = "lanhdao@tayninh.gov.vn"
    inner["Subject"] = "[TỐI MẬT] Công văn 1234/UBND-NC"
    inner["Message-ID"] = "<inner-1234@tayninh.gov.vn>"
    inner.set_content(document(where="none"))
    outer = EmailMessage(policy=SMTP)
    outer["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d=tayninh.gov.vn; "
                                       "dmarc=pass header.from=tayninh.gov.vn")
    outer["From"] = SENDER
    outer["To"] = "vanthu.sxd@tayninh.gov.vn"
    outer["Subject"] = "Fwd: Công văn 1234/UBND-NC"
    outer["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    outer["Message-ID"] = "<outer-1234@tayninh.gov.vn>"
    outer.set_content("Chuyển Văn thư Sở để xử lý.")
    outer.add_attachment(inner)
    return outer.as_bytes()


def _html_table_header() -> bytes:
    """An HTML-only mail laid out as the paper is: issuer, stamp and motto in one table row,
    which becomes one line of text."""
    rows = document(where="none").split("\n")
    header = ("<table><tr><td>ỦY BAN NHÂN DÂN<br>TỈNH TÂY NINH</td><td><b>MẬT</b></td>"
              "<td>CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM<br>Độc lập - Tự do - Hạnh phúc</td></tr>"
              "</table>")
    body = header + "".join(f"<p>{line}</p>" for line in rows[4:])
    msg = EmailMessage(policy=SMTP)
    msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim=pass header.d=tayninh.gov.vn; "
                                     "dmarc=pass header.from=tayninh.gov.vn")
    msg["From"] = SENDER
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = "Công văn 1234/UBND-NC"
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = "<html-table-1234@tayninh.gov.vn>"
    msg.set_content(body, subtype="html")
    return msg.as_bytes()


def _docx_page_header() -> bytes:
    return mail("Công văn 1234/UBND-NC", COVER, [(
        "1234-UBND-NC.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        docx(document(where="none"), header="TỐI MẬT"))])


ATTACKS: list[Attack] = [
    *_family(),
    Attack("secret-subject-only", "mark only in the subject, '[MẬT] Công văn …'",
           "notice without content",
           partial(mail, "[MẬT] Công văn 1234/UBND-NC", document(where="none")),
           announced_only),
    Attack("secret-subject-suffix", "subject 'Công văn 1234/UBND-NC (Tối mật)'",
           "notice without content",
           partial(mail, "Công văn 1234/UBND-NC (Tối mật)", document(where="none")),
           announced_only),
    Attack("secret-in-file-name", "the mark only in the attachment's name 'QĐ 1234 - Tối mật.pdf'",
           "notice without content",
           partial(mail, "Công văn 1234/UBND-NC", COVER, [(
               "QĐ 1234 - Tối mật.pdf", "application/pdf", pdf(document(where="none")))]),
           announced_only),
    Attack("secret-ascii-file-name", "the mark typed without accents in a name, 'CV_TOI_MAT.pdf'",
           "possibly confidential: notice without content",
           partial(mail, "Công văn 1234/UBND-NC", COVER, [(
               "CV_1234_TOI_MAT.pdf", "application/pdf", pdf(document(where="none")))]),
           announced_only),
    Attack("secret-forwarded-mail-subject", "a forwarded mail whose own subject was '[TỐI MẬT]'",
           "notice without content", _forwarded_marked_mail, announced_only),
    Attack("secret-html-table-row", "an HTML mail with issuer, stamp and motto in one table row",
           "notice without content", _html_table_header, announced_only),
    Attack("secret-docx-page-header", "mark only in the DOCX page header (header1.xml)",
           "notice without content", _docx_page_header, announced_only),
    Attack("secret-pdf-page-three", "mark and content on page 3 of a PDF, cover pages first",
           "notice without content",
           partial(mail, "Công văn 1234/UBND-NC", COVER, [(
               "1234-UBND-NC.pdf", "application/pdf",
               pdf(document("TỐI MẬT", "stamp"), pages=3, page_of_text=3))]),
           announced_only),
    Attack("secret-scan-after-cover", "an official cover letter, the real document a scan",
           "possibly confidential: notice without content, the clerk decides",
           partial(mail, "Công văn 1234/UBND-NC", PLAIN_COVER, [(
               "tai-lieu-kem-theo.pdf", "application/pdf", pdf("", image_only=True))]),
           announced_only),
    Attack("lookalike-tai-lieu-mat-neu-co", "'tài liệu mật (nếu có)' in running text",
           "forwarded as usual: a word in a sentence is no mark",
           partial(mail, "Công văn 1234/UBND-NC", document(where="none").replace(
               "Nơi nhận", "Hồ sơ gồm: tờ trình, tài liệu mật (nếu có).\nNơi nhận")),
           forwarded),
    Attack("lookalike-bi-mat-nha-nuoc", "'bảo vệ bí mật nhà nước' in a sentence and heading",
           "forwarded as usual",
           partial(mail, "V/v bảo vệ bí mật nhà nước", document(where="none").replace(
               "Nơi nhận", "Các đơn vị thực hiện nghiêm việc bảo vệ bí mật nhà nước.\n"
               "BẢO VỆ BÍ MẬT NHÀ NƯỚC\nNơi nhận")),
           forwarded),
    Attack("lookalike-signed-by-mat", "signed by a person named Mật, in capitals",
           "forwarded as usual",
           partial(mail, "Công văn 1234/UBND-NC", document(where="none") + "\nNGUYỄN THỊ MẬT"),
           forwarded),
]
