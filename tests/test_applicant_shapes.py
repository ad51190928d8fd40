"""The applicant of a dossier mail, whoever sends it and however they write: citizens, their
relatives and authorised agents, companies' staff, one-stop units forwarding a citizen's
dossier; phone numbers in every way they are written, and the numbers that only look like
one (identity card, tax code, dates); hostile texts read in linear time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.models import Address, Attachment, ParsedMail
from daemon.textnorm import strip_accents
from daemon.understand import NoCases, understand
from daemon.understand.applicant import applicant, is_forwarder
from tests.conftest import AUTHSERV_ID
from tests.desk import mail

NBSP, NNBSP = "\u00a0", "\u202f"


def _dossier(sender: str, address: str, body: str, *forms: str) -> ParsedMail:
    """A parsed dossier mail from `sender <address>` with `forms` as its attachments' text."""
    return ParsedMail(
        message_id="<hs@example.vn>", subject="Nộp hồ sơ", sender=Address(sender, address),
        to=(), reply_to=(), date=None, headers={}, body=body,
        attachments=tuple(Attachment(name=f"don-{i}.pdf", content_type="application/pdf",
                                     size=len(text), sha256="", payload=b"", text=text)
                          for i, text in enumerate(forms)),
        content_types=("text/plain",))


def _found(sender: str, address: str, body: str, *forms: str) -> dict[str, str | None]:
    return applicant(_dossier(sender, address, body, *forms)).as_json()


# --- names ---------------------------------------------------------------------------------

_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
           "Ngô", "Dương", "Lý", "Trịnh", "Lò", "Giàng", "Thạch", "Nông", "Triệu"]
_MIDDLE = ["Văn", "Thị", "Minh", "Đức", "Ngọc", "Thanh", "Hồng", "Quốc", "Thị Kim", "Xuân"]
_GIVEN = ["An", "Bình", "Cường", "Dung", "Hùng", "Lan", "Nhung", "Phúc", "Sơn", "Tài", "Yến",
          "Pấng", "Sáu", "Ánh Tuyết", "Quỳnh Anh"]
names = st.builds(lambda f, m, g: f"{f} {m} {g}", st.sampled_from(_FAMILY),
                  st.sampled_from(_MIDDLE), st.sampled_from(_GIVEN))

_FORMS = ["Công ty TNHH", "Công ty trách nhiệm hữu hạn", "Công ty CP", "Công ty Cổ phần",
          "Công ty TNHH MTV", "Doanh nghiệp tư nhân", "DNTN", "Hợp tác xã", "Hộ kinh doanh",
          "Chi nhánh Công ty TNHH", "Tổng công ty", "Công ty hợp danh"]
_TRADES = ["Xây dựng", "Thương mại Dịch vụ", "Xây dựng và Thương mại", "Vật liệu xây dựng",
           "Đầu tư Phát triển Hạ tầng", "Nông nghiệp", "Tư vấn Thiết kế", "Cấp thoát nước"]
_PROPER = ["Phú Thịnh", "Hưng Phát", "An Khang", "Miền Nam", "Tân Tiến", "Sông Hồng",
           "Minh Châu", "Bình Minh", "Đất Việt"]
organisations = st.builds(lambda f, t, p: f"{f} {t} {p}", st.sampled_from(_FORMS),
                          st.sampled_from(_TRADES), st.sampled_from(_PROPER))


@settings(max_examples=150, deadline=None)
@given(names, st.sampled_from(["Tôi tên là {}", "Tên tôi là {}", "Tôi là {}", "Em là {}",
                               "Tôi là ông {}", "Em là chị {}", "Tôi {} xin gửi",
                               "Họ và tên: {}", "Họ tên : {}", "Họ và tên:\n{}",
                               "Người đề nghị: {}", "Người nộp hồ sơ: Bà {}",
                               "Người nộp hồ sơ: Ông {}", "Công dân: KTS. {}",
                               "Họ và tên (viết chữ in hoa): {upper}", "Tôi tên là: {upper}"]),
       st.sampled_from(["", "Kính gửi Sở Xây dựng,\n", "Dạ em chào anh chị ạ.\n"]),
       st.sampled_from([", sinh năm 1985, xin nộp hồ sơ.", "\nĐịa chỉ: xã Tân Phú",
                        " - ĐT 0912 345 678", ".", ""]))
def test_a_citizens_own_name_is_read_after_any_cue(name: str, cue: str, before: str,
                                                   after: str) -> None:
    body = before + cue.format(name, upper=name.upper()) + after
    found = _found("Không Phải Tên", "dan@gmail.com", body)
    assert found["name"] == name
    assert found["email"] == "dan@gmail.com"


@settings(max_examples=100, deadline=None)
@given(names, names)
def test_the_form_names_the_applicant_when_the_body_does_not(name: str, sender: str) -> None:
    form = f"ĐƠN ĐỀ NGHỊ\nKính gửi: Sở Xây dựng\n1. Họ và tên: {name}\n2. Số định danh cá " \
           f"nhân: 072185001234\n3. Số điện thoại: 0976.543.210"
    found = _found(sender, "x@gmail.com", "Em gửi hồ sơ ạ. Em cảm ơn.", form)
    assert found == {"name": name, "email": "x@gmail.com", "phone": "0976543210"}


@pytest.mark.parametrize(("body", "name"), [
    ("Kính gửi Sở,\nTôi gửi hồ sơ xin cấp phép xây dựng.\nTrân trọng,\nLý Thị Kim", "Lý Thị Kim"),
    ("Tôi gửi hồ sơ đề nghị cấp chứng chỉ.\nHuỳnh Thanh Sơn - ĐT 0945 667 880",
     "Huỳnh Thanh Sơn"),
    ("Tôi là Phạm Minh Tuấn, hiện công tác tại Công ty CP Kiến trúc Nam Việt, xin gửi hồ sơ "
     "đề nghị cấp chứng chỉ hành nghề.", "Phạm Minh Tuấn"),
    ("Em chào Sở ạ. Em Cảm Ơn Ạ.\nTrân trọng cảm ơn!\nNguyễn Văn Hùng", "Nguyễn Văn Hùng"),
    ("Hồ sơ có xác nhận của UBND Phường Tân Ninh.\nTôi tên là Đặng Văn Tài.", "Đặng Văn Tài"),
    ("Tôi là Nguyễn Văn Ánh.\nCông ty TNHH Tư vấn Bắc Nam (đơn vị thiết kế) có trách nhiệm "
     "về bản vẽ.", "Nguyễn Văn Ánh"),
    ("Tôi gửi hồ sơ xin cấp phép, hồ sơ thiết kế của Công ty CP Tư vấn Đông Á.\nTrân trọng.",
     "Hiển Thị"),
    ("Tôi, Nguyễn Văn Ánh, xin nộp hồ sơ.", "Nguyễn Văn Ánh"),
    ("Em gửi hồ sơ của Công ty TNHH Đông Á ạ.", "Công ty TNHH Đông Á"),
])
def test_a_citizens_name_beside_other_capitalised_words(body: str, name: str) -> None:
    assert _found("Hiển Thị", "dan@gmail.com", body)["name"] == name


@settings(max_examples=100, deadline=None)
@given(names, st.sampled_from([
    "Kính gửi Sở,\nTôi tên là {name}, xin nộp hồ sơ cấp phép.\nSĐT: {phone}\nTrân trọng",
    "Chào anh chị, em là {name}, em gửi hồ sơ ạ. Số điện thoại {phone}",
    "Họ và tên: {name}\nĐiện thoại: {phone}",
    "Tôi gửi hồ sơ.\nTrân trọng cảm ơn!\n{name} - ĐT {phone}"]))
def test_a_mail_written_without_diacritics_is_read_alike(name: str, template: str) -> None:
    """Many type Vietnamese without its marks: the cues are the same words."""
    body = strip_accents(template.format(name=name, phone="0912.345.678"))
    found = _found("Khong Phai", "dan@gmail.com", body)
    assert found == {"name": strip_accents(name), "email": "dan@gmail.com",
                     "phone": "0912345678"}


def test_an_unaccented_company_and_unit_are_read_alike() -> None:
    company = _found("Cty", "info@anphat.vn", "Cong ty TNHH Xay dung An Phat gui ho so de "
                     "nghi cap phep. LH: 0274 3855 667")
    assert company == {"name": "Cong ty TNHH Xay dung An Phat", "email": "info@anphat.vn",
                       "phone": "02743855667"}
    unit = _found("TTPVHCC", "tiepnhan@binhduong.gov.vn", "Trung tam Phuc vu hanh chinh cong "
                  "chuyen ho so cua ong Le Van Tam, dien thoai 0905 111 222, email "
                  "tamlv@gmail.com.")
    assert unit == {"name": "Le Van Tam", "email": "tamlv@gmail.com", "phone": "0905111222"}


@pytest.mark.parametrize("name", ["Chu Văn An", "La Văn Cầu", "Tô Văn Lâm", "Phương Thị Hoa",
                                  "Mã Thị Liên", "Vũ Thị Hường", "Lê Văn Phong", "Ông Văn Tùng"])
@pytest.mark.parametrize("template", ["Họ và tên: {}", "Tôi là {}, xin gửi hồ sơ.",
                                      "Em gửi hồ sơ ạ.\nTrân trọng,\n{}"])
def test_a_family_name_that_is_also_a_title_or_a_place_word(name: str, template: str) -> None:
    """"Chu", "La", "Mã" are family names as "chú", "là", "má" are not; "Tô", "Vũ",
    "Phương" are family names as "Tổ", "Vụ", "Phường" are not."""
    assert _found("Hiển Thị", "dan@gmail.com", template.format(name))["name"] == name


# --- the sender is not the applicant --------------------------------------------------------

_UNITS = [("Trung tâm Phục vụ hành chính công tỉnh Gia Lai", "tiepnhan@gialai.gov.vn"),
          ("Bộ phận Một cửa UBND xã Tân Phú", "motcua.tanphu@dongnai.gov.vn"),
          ("TT PVHCC", "pvhcc@hue.gov.vn"),
          ("Bộ phận tiếp nhận và trả kết quả", "bptn.sxd@angiang.gov.vn"),
          ("Bưu điện tỉnh Nghệ An", "hcc.nghean@vnpost.vn"),
          ("Văn phòng", "tiepnhan.hcc@quangninh.gov.vn")]
_NAME_FIELDS = ["Người nộp hồ sơ: {}", "Họ và tên người nộp: {}", "Công dân: {}",
                "Tên tổ chức, cá nhân: {}", "Người đề nghị: Ông/Bà {}", "Ông/Bà: {}",
                "Tên cá nhân/tổ chức: {}", "Chủ hồ sơ: {}", "Ông (bà): {}",
                "Họ tên người nộp: Ông (bà) {}"]
_EMAIL_FIELDS = ["Email: {}", "E-mail : {}", "Thư điện tử: {}", "Địa chỉ thư điện tử: <{}>",
                 "Hộp thư: {}"]
_PHONE_FIELDS = ["Điện thoại: {}", "ĐT: {}", "SĐT {}", "Số điện thoại liên hệ: {}",
                 "Điện thoại liên hệ: {}"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_UNITS), st.one_of(names, organisations),
       st.sampled_from(_NAME_FIELDS), st.sampled_from(_EMAIL_FIELDS),
       st.sampled_from(_PHONE_FIELDS), st.permutations(range(3)), names, st.booleans())
def test_a_one_stop_unit_forwards_for_the_applicant_named_in_its_body(
        unit: tuple[str, str], who: str, name_field: str, email_field: str,
        phone_field: str, order: list[int], officer: str, officer_first: bool) -> None:
    fields = [name_field.format(who), email_field.format("nguoinop.hs@gmail.com"),
              phone_field.format("0912.345.678")]
    own = f"Cán bộ tiếp nhận: {officer} - ĐT: 0269 3822 456 - Email: {unit[1]}"
    lines = ["Kính chuyển Sở hồ sơ đề nghị cấp giấy phép xây dựng.",
             *([own] if officer_first else []), *(fields[i] for i in order),
             "Đề nghị Quý cơ quan giải quyết theo quy định.", "Trân trọng.",
             *([] if officer_first else [own])]
    found = _found(unit[0], unit[1], "\n".join(lines))
    assert found == {"name": who, "email": "nguoinop.hs@gmail.com", "phone": "0912345678"}


def test_an_official_the_mail_is_sent_to_is_not_the_applicant() -> None:
    body = ("Em gửi hồ sơ cho chị Nguyễn Thị Hoa, chuyên viên phòng Quản lý đô thị ạ.\n"
            "Trân trọng\nLê Văn Khánh")
    assert _found("Khánh", "khanh@gmail.com", body)["name"] == "Lê Văn Khánh"


def test_a_form_laid_out_as_a_table_gives_its_values_below_the_labels() -> None:
    body = ("Kính gửi Sở\nTHÔNG TIN NGƯỜI NỘP\nHọ và tên\nTrần Văn Bốn\nSố CCCD\n"
            "079080012345\nSố điện thoại\n0912 888 999")
    assert _found("X", "x@gmail.com", body) == {
        "name": "Trần Văn Bốn", "email": "x@gmail.com", "phone": "0912888999"}
    company = ("Tên doanh nghiệp\nCông ty TNHH Đông Á\nMã số thuế\n0312345678\nĐiện thoại\n"
               "028 3822 1234")
    assert _found("Đông Á", "dong.a@gmail.com", "Gửi hồ sơ.", company) == {
        "name": "Công ty TNHH Đông Á", "email": "dong.a@gmail.com", "phone": "02838221234"}
    staff = "DANH SÁCH NHÂN SỰ\nSTT\nHọ và tên\nChức danh\n1\nLê Quốc Bảo\nGiám đốc"
    assert _found("Minh Phát", "hc@minhphat.vn", "Gửi hồ sơ.", staff)["name"] == "Minh Phát"


def test_an_electronic_one_stop_system_notice() -> None:
    body = ("Hệ thống thông tin giải quyết thủ tục hành chính tỉnh Quảng Ninh thông báo:\n"
            "Hồ sơ số: 000.00.36.H50-260315-0012\nThủ tục: Cấp giấy phép xây dựng\n"
            "Chủ hồ sơ: NGUYỄN VĂN TOÀN\nSố điện thoại: 0904123456\nEmail: toan.nv@gmail.com")
    assert _found("Hệ thống một cửa điện tử", "motcua@quangninh.gov.vn", body) == {
        "name": "Nguyễn Văn Toàn", "email": "toan.nv@gmail.com", "phone": "0904123456"}


def test_a_one_stop_unit_naming_the_applicant_in_its_sentence() -> None:
    body = ("Bộ phận Một cửa xã Tân Phú chuyển hồ sơ của ông Trần Văn Bình (SĐT: 0903.112.334, "
            "email: binhtv@gmail.com) đề nghị cấp giấy phép xây dựng.\nCán bộ tiếp nhận: "
            "Nguyễn Thị Hoa - ĐT 0251 3822 111\nTrân trọng.\nNguyễn Thị Hoa")
    assert _found("Một cửa Tân Phú", "motcua.tanphu@dongnai.gov.vn", body) == {
        "name": "Trần Văn Bình", "email": "binhtv@gmail.com", "phone": "0903112334"}


def test_a_one_stop_unit_never_gives_its_own_address_name_or_phone() -> None:
    body = ("Trung tâm Phục vụ hành chính công chuyển hồ sơ kèm theo.\nTôi là Lê Văn Cán, "
            "cán bộ tiếp nhận, ĐT 0238 3555 666.\nTrân trọng,\nLê Văn Cán")
    found = _found("Trung tâm Phục vụ hành chính công", "tiepnhan@nghean.gov.vn", body)
    assert found == {"name": None, "email": None, "phone": None}


def test_a_unit_that_forwards_a_citizens_mail_gives_the_citizens_address() -> None:
    body = ("Chuyển Sở hồ sơ công dân gửi qua Bộ phận Một cửa.\n\n---------- Forwarded "
            "message ---------\nFrom: Nguyễn Văn An <an.nguyen@gmail.com>\nDate: 10/11/2026\n"
            "\nTôi tên là Nguyễn Văn An, xin nộp hồ sơ. SĐT 0987 654 321")
    found = _found("Bộ phận Một cửa", "motcua@tayninh.gov.vn", body)
    assert found == {"name": "Nguyễn Văn An", "email": "an.nguyen@gmail.com",
                     "phone": "0987654321"}


@pytest.mark.parametrize("sender", [
    ("Ban QLDA huyện Bảo Lâm", "bqlda@lamdong.gov.vn"),
    ("Nguyễn Văn An", "an@gmail.com"),
    ("Phòng Hành chính", "hanhchinh@phuthinh.vn")])
def test_a_sender_that_is_no_one_stop_unit_is_not_one(sender: tuple[str, str]) -> None:
    assert not is_forwarder(_dossier(*sender, "Gửi hồ sơ đề nghị cấp phép."))


_FOR_COMPANY = [
    "Tôi là {staff}, nhân viên phòng Hành chính, thay mặt {org} gửi hồ sơ.",
    "Kính gửi Quý Sở,\n{org} (MST 0312345678) kính gửi hồ sơ đề nghị cấp phép.",
    "Tôi là {staff}, đại diện cho {org}, xin nộp hồ sơ.",
    "Tôi là {staff}, kế toán. Công ty chúng tôi là {org}, xin gửi hồ sơ kèm theo.",
    "Kính gửi Sở,\nChúng tôi gửi hồ sơ đề nghị cấp phép.\nTrân trọng,\n{staff}\n"
    "Phòng Hành chính - {org}",
    "Kính gửi Sở, {org} xin gửi hồ sơ.\nNgười liên hệ: Ông {staff} - Giám đốc",
    "Kính gửi Sở,\nTên tổ chức: {org}\nNgười đại diện theo pháp luật: {staff}",
]


@settings(max_examples=150, deadline=None)
@given(organisations, names, st.sampled_from(_FOR_COMPANY),
       st.sampled_from(["0274 3855 667", "(0274) 3855 667", "0907.112.233", "+84 907 112 233"]))
def test_a_companys_staff_send_for_the_company(org: str, staff: str, template: str,
                                               phone: str) -> None:
    body = template.format(org=org, staff=staff) + f"\nĐiện thoại công ty: {phone}"
    found = _found(staff, "hanhchinh@congty.vn", body)
    digits = "".join(c for c in phone if c.isdigit())
    expected = "0" + digits[2:] if digits.startswith("84") else digits
    assert found == {"name": org, "email": "hanhchinh@congty.vn", "phone": expected}


@settings(max_examples=100, deadline=None)
@given(names, names, st.sampled_from([
    "Tôi là {agent}, nộp hồ sơ thay cho mẹ tôi là bà {who}.",
    "Tôi là {agent}, được ông {who} ủy quyền nộp hồ sơ.",
    "Em là {agent}, em được bố em là {who} ủy quyền ạ.",
    "Tôi là {agent}, theo giấy ủy quyền của ông {who}, xin nộp hồ sơ.",
    "Tôi {agent} nộp hồ sơ hộ ông {who}.",
    "Người được ủy quyền: {agent}\nNgười ủy quyền: {who}",
    "Tôi là {agent}, thay mặt ông {who} gửi hồ sơ.",
    "Em gửi hồ sơ giúp bà {who} ạ.",
    "Con gửi hồ sơ cho bố là ông {who} ạ.\nTrân trọng\n{agent}",
    "Tôi là chủ hộ {who}. Tôi nhờ con là {agent} gửi hồ sơ."]))
def test_a_relative_or_an_agent_sends_for_the_applicant(agent: str, who: str,
                                                        template: str) -> None:
    found = _found(agent, "agent@gmail.com", template.format(agent=agent, who=who))
    assert found["name"] == who and found["email"] == "agent@gmail.com"


# --- phone numbers -------------------------------------------------------------------------

_MOBILE = st.builds(lambda p, rest: p + rest,
                    st.sampled_from(["032", "035", "038", "056", "070", "077", "083", "086",
                                     "088", "090", "091", "094", "097", "098", "099"]),
                    st.text("0123456789", min_size=7, max_size=7))
_LANDLINE = st.builds(lambda p, rest: (p + rest)[:11],
                      st.sampled_from(["024", "028", "0274", "0276", "0238", "0269", "0214"]),
                      st.text("0123456789", min_size=8, max_size=8))


def _written(digits: str, style: str) -> str:
    """`digits` (national form) as people write them."""
    head = 3 if style.endswith("3") else 4
    a, b, c = digits[:head], digits[head:head + 3], digits[head + 3:]
    bare = digits[1:]
    return {"plain": digits, "dots": f"{a}.{b}.{c}", "dashes": f"{a}-{b}-{c}",
            "spaces": f"{a} {b} {c}", "spaces3": f"{a} {b} {c}", "nbsp": f"{a}{NBSP}{b}{NBSP}{c}",
            "narrow": f"{a}{NNBSP}{b}{NNBSP}{c}", "tabs": f"{a}\t{b}\t{c}",
            "intl": f"+84 {bare}", "intl-spaced": f"+84 {bare[:3]} {bare[3:6]} {bare[6:]}",
            "intl-brackets": f"(+84) {bare}", "intl-trunk": f"+84 (0) {bare}",
            "84": f"84{bare}", "0084": f"0084 {bare}", "area": f"({a}) {b}{c}"}[style]


_STYLES = ["plain", "dots", "dashes", "spaces", "spaces3", "nbsp", "narrow", "tabs", "intl",
           "intl-spaced", "intl-brackets", "intl-trunk", "84", "0084", "area"]
_PHONE_LABELS = ["Số điện thoại: ", "SĐT ", "sđt:", "ĐT: ", "Điện thoại liên hệ : ", "Tel: ",
                 "Di động: ", "ĐTDĐ ", "Liên hệ: ", "Zalo ", "Số ĐT:", "ĐT/Fax: "]


@settings(max_examples=300, deadline=None)
@given(st.one_of(_MOBILE, _LANDLINE), st.sampled_from(_STYLES), st.sampled_from(_PHONE_LABELS),
       st.sampled_from(["", ".", " ạ.", ", email a@b.vn", " (Zalo)", " - 0 bản sao"]))
def test_every_way_of_writing_a_phone_gives_the_national_form(
        digits: str, style: str, label: str, after: str) -> None:
    if style == "area" and digits[1] != "2":
        style = "spaces"
    body = f"Tôi tên là Nguyễn Văn An.\n{label}{_written(digits, style)}{after}\nTrân trọng."
    assert _found("An", "an@gmail.com", body)["phone"] == digits


_NOT_PHONES = [
    "Số CCCD: 079185001234", "CCCD 0791 8500 1234", "Căn cước công dân số: 001085012345",
    "MST: 0312345678", "Mã số thuế 0312345678", "Mã số doanh nghiệp: 0312345678-001",
    "(MST 0301234567)", "Ngày sinh: 12.03.1985", "ngày 05-03-2026", "Mã hồ sơ: H43.26-260312-0001",
    "Số tài khoản: 0071000123456", "STK 0912345678", "Fax: 0274 3855 668",
    "Thửa đất số 123, tờ bản đồ số 15", "Số hồ sơ HS-2026-000512", "Hotline 1900 1234",
    "Giá trị 15.000.000.000 đồng",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_NOT_PHONES), min_size=1, max_size=4), _MOBILE,
       st.integers(min_value=0, max_value=4), st.booleans())
def test_identity_tax_file_and_date_numbers_are_never_a_phone(
        noise: list[str], digits: str, where: int, with_phone: bool) -> None:
    lines = list(noise)
    if with_phone:
        lines.insert(min(where, len(lines)), f"Điện thoại: {_written(digits, 'dots')}")
    body = "Tôi tên là Trần Thị Lan.\n" + "\n".join(lines)
    assert _found("Lan", "lan@gmail.com", body)["phone"] == (digits if with_phone else None)


# --- the public corpus's conventions through the whole reader --------------------------------

def test_a_company_dossier_read_from_the_raw_mail(tmp_path: Path) -> None:
    cfg = config.parse({"storage": {"data_dir": str(tmp_path)},
                        "security": {"authserv_id": AUTHSERV_ID}},
                       file="t", text="", base=tmp_path)
    body = ("Kính gửi: Sở Xây dựng tỉnh Tây Ninh\n\nDoanh nghiệp tư nhân Vật liệu xây dựng "
            "Hưng Phát gửi hồ sơ đề nghị cấp giấy phép xây dựng.\nLiên hệ: Trương Văn Hưng, "
            "ĐT 0274\u00a03855\u00a0667\n\nTrân trọng.")
    raw = mail('"Phòng Dự án - Hưng Phát" <duan@hungphat-vlxd.vn>', "Nộp hồ sơ cấp phép",
               body, attachment=b"%PDF-1.4\n")
    _, understanding = understand(raw, cfg, NoCases())
    assert understanding.applicant is not None
    assert understanding.applicant.as_json() == {
        "name": "Doanh nghiệp tư nhân Vật liệu xây dựng Hưng Phát",
        "email": "duan@hungphat-vlxd.vn", "phone": "02743855667"}


# --- hostile inputs ------------------------------------------------------------------------

BOUND = 10.0  # linear work here takes well under a second; quadratic work takes minutes


@pytest.mark.parametrize("body", [  # each past the 64 KB read, all of it a worst case
    "0912 " * 40_000,
    "ĐT: 0912.345.67 " * 10_000,
    "1-" * 100_000 + "1",
    "+84 (0) " * 20_000,
    "Công ty TNHH " * 20_000,
    "thay mặt Công ty " * 10_000,
    "hồ sơ " * 20_000 + "của ông Nguyễn Văn An",
    "Tôi là Nguyễn " * 20_000,
    "Họ và tên: (" * 20_000,
    "được ông Nguyễn Văn A " * 10_000,
    "a@b" * 50_000,
    ("Email: x" + "y" * 60 + "@gmail.com ") * 2_000,
    "Trân trọng\n" * 20_000,
    "Họ và tên\n" * 20_000,
    "gửi hồ sơ cho bố là ông " * 10_000,
])
def test_a_hostile_body_is_read_in_linear_time(body: str) -> None:
    start = time.monotonic()
    for forwarder in (("Nguyễn Văn An", "an@gmail.com"),
                      ("Trung tâm Phục vụ hành chính công", "tiepnhan@x.gov.vn")):
        applicant(_dossier(*forwarder, body, body))
    assert time.monotonic() - start < BOUND


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.sampled_from(list("0123456789 .-+()\n\u00a0ĐTđtCôngtyTNHHôià:@ab")),
               max_size=300), st.text(max_size=200))
def test_any_text_gives_a_phone_in_the_national_form_or_none(body: str, form: str) -> None:
    found = _found("Trung tâm Phục vụ hành chính công", "tiepnhan@x.gov.vn", body, form)
    phone = found["phone"]
    assert phone is None or (phone.isdigit() and phone[0] == "0" and len(phone) in (10, 11))
    assert found["email"] is None or not found["email"].endswith("@x.gov.vn")
