"""The issuer's name from the upper-case header block: bodies of every level, written with the
capitals of Decree 30/2020 Appendix II, whatever the wrapping and abbreviations of the header.

Expected names come from tests/generated/data (their own sources), not from the product's
data file, so the two lists check each other.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.understand.issuer import issuer_of

DATA = Path(__file__).parent / "generated" / "data"
AGENCIES: Any = yaml.safe_load((DATA / "agencies.yaml").read_text(encoding="utf-8"))
PROVINCES: Any = yaml.safe_load((DATA / "provinces.yaml").read_text(encoding="utf-8"))
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "labels.json"


def _places() -> list[tuple[str, str]]:
    """(kind, name) of the provinces after and before the 2025 merger."""
    after = [(p["kind"], p["name"]) for p in PROVINCES["after_2025"]]
    before = PROVINCES["before_2025"]
    return after + [("thành phố", c) for c in before["cities"]] + \
        [("tỉnh", p) for p in before["provinces"]]


PLACES = _places()


def _place(kind: str, name: str) -> str:
    return "Thành phố Hồ Chí Minh" if name == "Hồ Chí Minh" else f"{kind} {name}"


def _printed_place(kind: str, name: str, rnd: random.Random) -> str:
    if kind == "thành phố":
        kind = rnd.choice(["thành phố", "tp.", "tp", "thành phố"])
    return f"{kind} {name}".upper()


def _wrap(text: str, rnd: random.Random, parts: int) -> list[str]:
    """The text over up to 1 + parts lines, cut at spaces, never inside "X - Y"."""
    words = text.split()
    cuts = [i for i in range(2, len(words) - 1) if "-" not in (words[i - 1], words[i])]
    chosen = sorted(rnd.sample(cuts, min(parts, len(cuts))))
    lines, last = [], 0
    for cut in [*chosen, len(words)]:
        lines.append(" ".join(words[last:cut]))
        last = cut
    return lines


def _council(rnd: random.Random) -> str:
    return rnd.choice(["UBND", "ỦY BAN NHÂN DÂN", "UỶ BAN NHÂN DÂN"])


def _case(rnd: random.Random) -> tuple[list[str], str]:
    """A header (managing body, issuing body) and the name it must give."""
    kind, name = rnd.choice(PLACES)
    place, printed = _place(kind, name), _printed_place(kind, name, rnd)
    family = rnd.choice(["dept", "office", "police", "party", "ministry", "unit", "council",
                         "body", "public", "court"])
    if family == "dept":
        dept = rnd.choice(AGENCIES["departments"] + AGENCIES["departments_before_2025"])["name"]
        return [f"{_council(rnd)} {printed}", *_wrap(dept.upper(), rnd, 1)], f"{dept} {place}"
    if family == "office":
        return [f"{_council(rnd)} {printed}", "VĂN PHÒNG"], \
            f"Văn phòng Ủy ban nhân dân {place}"
    if family == "police":
        unit = rnd.choice(AGENCIES["police_divisions"])["name"]
        return [f"CÔNG AN {printed}", *_wrap(unit.upper(), rnd, rnd.randint(0, 2))], \
            f"{unit} Công an {place}"
    if family == "party":
        board = rnd.choice(AGENCIES["party"])["name"]
        committee = "Thành ủy" if kind == "thành phố" else "Tỉnh ủy"
        header = rnd.choice([
            [f"ĐẢNG BỘ {printed}", f"{board} {committee}".upper()],
            [f"{committee} {name}".upper(), board.upper()],
            [f"{committee} {name}   Đảng Cộng sản Việt Nam".upper(), board.upper()],
        ])
        return header, f"{board} {committee} {name}"
    if family == "ministry":
        ministry = rnd.choice(AGENCIES["ministries"] + AGENCIES["ministries_before_2025"])
        return _wrap(ministry["name"].upper(), rnd, rnd.randint(0, 1)), ministry["name"]
    if family == "unit":
        unit = rnd.choice(AGENCIES["ministry_units"])
        return [unit["parent"].upper(), *_wrap(unit["name"].upper(), rnd, 1)], unit["name"]
    if family == "council":
        body = rnd.choice(["Ủy ban nhân dân", "Hội đồng nhân dân"])
        short = {"Ủy ban nhân dân": "UBND", "Hội đồng nhân dân": "HĐND"}[body]
        return rnd.choice([[f"{body.upper()} {printed}"], [body.upper(), printed],
                           [f"{short} {printed}"]]), f"{body} {place}"
    if family == "body":
        body = rnd.choice(AGENCIES["provincial_bodies"])["name"]
        return _wrap(f"{body} {printed}".upper(), rnd, 1), f"{body} {place}"
    if family == "public":
        unit = rnd.choice(AGENCIES["public_units"])["name"]
        parent = rnd.choice([f"SỞ Y TẾ {printed}", f"{_council(rnd)} {printed}"])
        return [parent, *_wrap(unit.upper(), rnd, 1)], f"{unit} {place}"
    court = rnd.choice(["Tòa án nhân dân", "Viện kiểm sát nhân dân"])
    return [court.upper(), printed], f"{court} {place}"


@settings(max_examples=400, deadline=None)
@given(st.randoms(use_true_random=False))
def test_headers_of_every_level_round_trip_to_their_name(rnd: random.Random) -> None:
    header, name = _case(rnd)
    assert issuer_of(header) == name, header


@settings(max_examples=150, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from([
    "Kính gửi Quý cơ quan,", "Trân trọng.", "Văn thư", "Gửi kèm văn bản điện tử.",
]))
def test_prose_and_marks_around_the_header_are_not_read(rnd: random.Random, prose: str) -> None:
    header, name = _case(rnd)
    assert issuer_of([prose, "THÔNG BÁO", prose, *header, "*", "-----"]) == name


@pytest.mark.parametrize(("header", "name"), [
    (["UBND TỈNH TÂY NINH", "SỞ NỘI VỤ"], "Sở Nội vụ tỉnh Tây Ninh"),
    (["CÔNG AN TỈNH NGHỆ AN", "PHÒNG AN NINH KINH TẾ"],
     "Phòng An ninh kinh tế Công an tỉnh Nghệ An"),
    (["TỈNH ỦY ĐIỆN BIÊN", "BAN TỔ CHỨC"], "Ban Tổ chức Tỉnh ủy Điện Biên"),
    (["ĐẢNG BỘ TỈNH ĐIỆN BIÊN", "TỈNH ỦY"], "Tỉnh ủy Điện Biên"),
    (["ĐẢNG BỘ XÃ TÂN LẬP", "ĐẢNG ỦY"], "Đảng ủy xã Tân Lập"),
    (["BỘ Y TẾ", "CỤC QUẢN LÝ DƯỢC"], "Cục Quản lý Dược"),
    (["BỘ Y TẾ", "VĂN PHÒNG"], "Văn phòng Bộ Y tế"),
    (["UBND TỈNH CÀ MAU", "VĂN PHÒNG"], "Văn phòng Ủy ban nhân dân tỉnh Cà Mau"),
    (["UBND TỈNH TÂY NINH", "THANH TRA TỈNH"], "Thanh tra tỉnh Tây Ninh"),
    (["HĐND TỈNH NGHỆ AN", "BAN PHÁP CHẾ"], "Ban Pháp chế Hội đồng nhân dân tỉnh Nghệ An"),
    (["UBND TP.HỒ CHÍ MINH", "SỞ CÔNG THƯƠNG"], "Sở Công Thương Thành phố Hồ Chí Minh"),
    (["UBND THÀNH PHỐ HÀ NỘI"], "Ủy ban nhân dân thành phố Hà Nội"),
    (["BỘ LAO ĐỘNG - THƯƠNG BINH", "VÀ XÃ HỘI"], "Bộ Lao động - Thương binh và Xã hội"),
    (["BỘ CÔNG AN", "CỤC CẢNH SÁT QUẢN LÝ HÀNH CHÍNH", "VỀ TRẬT TỰ XÃ HỘI"],
     "Cục Cảnh sát quản lý hành chính về trật tự xã hội"),
    (["UBND HUYỆN CỦ CHI", "PHÒNG TÀI NGUYÊN VÀ MÔI", "TRƯỜNG"],
     "Phòng Tài nguyên và Môi trường huyện Củ Chi"),
    (["SỞ Y TẾ TỈNH AN GIANG", "PHÒNG KẾ HOẠCH - TÀI CHÍNH"],
     "Phòng Kế hoạch - Tài chính Sở Y tế tỉnh An Giang"),
    (["TỔNG LIÊN ĐOÀN LAO ĐỘNG VIỆT NAM", "LIÊN ĐOÀN LAO ĐỘNG TỈNH AN GIANG"],
     "Liên đoàn Lao động tỉnh An Giang"),
    (["ỦY BAN MTTQ VIỆT NAM", "TỈNH NGHỆ AN"], "Ủy ban Mặt trận Tổ quốc Việt Nam tỉnh Nghệ An"),
    (["TÒA ÁN NHÂN DÂN TỐI CAO"], "Tòa án nhân dân tối cao"),
    (["UBND TỈNH TÂY NINH", "SỞ Y TẾ", "TRUNG TÂM Y TẾ KHU VỰC GÒ DẦU"],
     "Trung tâm Y tế khu vực Gò Dầu"),
    (["UBND TỈNH TÂY NINH", "SỞ Y TẾ", "VĂN PHÒNG"], "Văn phòng Sở Y tế tỉnh Tây Ninh"),
    (["BHXH TỈNH TÂY NINH"], "Bảo hiểm xã hội tỉnh Tây Ninh"),
    (["HĐND TỈNH ĐỒNG NAI", "THƯỜNG TRỰC HĐND"], "Thường trực Hội đồng nhân dân tỉnh Đồng Nai"),
    (["BỘ QUỐC PHÒNG", "QUÂN KHU 7", "BỘ CHỈ HUY QUÂN SỰ TỈNH TÂY NINH"],
     "Bộ Chỉ huy Quân sự tỉnh Tây Ninh"),
    (["UBND XÃ HỘI AN"], "Ủy ban nhân dân xã Hội An"),
    (["UBND ĐẶC KHU PHÚ QUỐC"], "Ủy ban nhân dân đặc khu Phú Quốc"),
    (["ỦY BAN NHÂN DÂN", "THÀNH PHỐ PHAN RANG - THÁP CHÀM"],
     "Ủy ban nhân dân thành phố Phan Rang - Tháp Chàm"),
    (["UBND TỈNH BÌNH THUẬN", "SỞ VĂN HÓA, THỂ THAO", "VÀ DU LỊCH"],
     "Sở Văn hóa, Thể thao và Du lịch tỉnh Bình Thuận"),
    (["UỶ BAN NHÂN DÂN TỈNH THANH HOÁ"], "Ủy ban nhân dân tỉnh Thanh Hóa"),
    (["VĂN PHÒNG CHÍNH PHỦ"], "Văn phòng Chính phủ"),
    (["THỦ ĐÔ HÀ NỘI"], "Thủ đô Hà Nội"),
    (["CÔNG AN TỈNH LẠNG SƠN", "PHÒNG CẢNH SÁT", "PHÒNG CHÁY, CHỮA CHÁY VÀ CỨU NẠN, CỨU HỘ"],
     "Phòng Cảnh sát phòng cháy, chữa cháy và cứu nạn, cứu hộ Công an tỉnh Lạng Sơn"),
])
def test_named_headers(header: list[str], name: str) -> None:
    assert issuer_of(header) == name


def test_the_public_corpus_issuers_are_written_as_labelled() -> None:
    """Every issuer of the corpus, printed in capitals over its managing body, reads back."""
    labels = json.loads(CORPUS.read_text(encoding="utf-8"))
    issuers = {label["document"]["issuer"] for label in labels if label.get("document")}
    assert issuers
    for issuer in issuers:
        assert issuer_of([issuer.upper()]) == issuer


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=50))
def test_hostile_blocks_give_a_name_or_none(block: list[str]) -> None:
    name = issuer_of(block)
    assert name is None or (0 < len(name) < 2000)


def test_a_block_without_capitals_names_nobody() -> None:
    assert issuer_of(["Kính gửi Quý cơ quan,", "Trân trọng."]) is None
    assert issuer_of([]) is None


@pytest.mark.parametrize(("block", "expected"), [
    (["SỞ Y TẾ TỈNH ĐỒNG NAI", "BỆNH VIỆN ĐA KHOA ĐỒNG NAI"], "Bệnh viện Đa khoa Đồng Nai"),
    (["UBND TỈNH GIA LAI", "TRƯỜNG CAO ĐẲNG GIA LAI"], "Trường Cao đẳng Gia Lai"),
])
def test_a_unit_that_names_its_place_does_not_take_it_twice(block: list[str],
                                                            expected: str) -> None:
    assert issuer_of(block) == expected
