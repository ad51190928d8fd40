"""The issuing body of a document, from the upper-case block at its top left.

Decree 30/2020 Appendix I prints the managing body over the issuing body, in capitals; this
module joins them into one name and gives it the capitalisation of Appendix II.
"""

from __future__ import annotations

import re

from daemon.textnorm import collapse_spaces, fold

_ISSUER_HEADS = (
    "ủy ban", "uỷ ban", "ubnd", "sở", "bộ", "văn phòng", "phòng", "ban", "cục", "chi cục",
    "tổng cục", "công an", "trung tâm", "hội đồng", "tòa án", "viện", "kho bạc", "thanh tra",
    "bộ chỉ huy", "chi nhánh", "ngân hàng", "bảo hiểm", "cục thuế", "đài", "trường", "bệnh viện",
    "công ty", "tỉnh ủy", "huyện ủy", "đảng ủy", "liên đoàn", "đoàn", "quân khu", "hđnd",
    "thường trực",
)
_LOCALITIES = ("tỉnh", "thành phố", "huyện", "quận", "thị xã", "xã", "phường", "thị trấn")
_FIXED_CASE = {
    "ubnd": "Ủy ban nhân dân", "ủy ban nhân dân": "Ủy ban nhân dân",
    "bộ chỉ huy quân sự": "Bộ Chỉ huy Quân sự", "công an": "Công an",
    "văn phòng": "Văn phòng", "hội đồng nhân dân": "Hội đồng nhân dân",
}

def is_upper(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def _title_words(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split())


def _organisation_case(upper: str) -> str:
    """Sentence-case an upper-case body name, keeping field and place names capitalised:
    'SỞ NÔNG NGHIỆP VÀ MÔI TRƯỜNG TỈNH TÂY NINH' -> 'Sở Nông nghiệp và Môi trường tỉnh Tây Ninh'.
    """
    text = fold(upper)
    text = re.sub(r"\bubnd\b", "ủy ban nhân dân", text)
    text = re.sub(r"\bhđnd\b", "hội đồng nhân dân", text)
    text = re.sub(r"^vp\b", "văn phòng", text)
    locality = None
    for word in _LOCALITIES:
        match = re.search(rf"(?:^|\s)({word})\s+(.+)$", text)
        if match and (locality is None or match.start(1) < locality[0]):
            locality = (match.start(1), word, match.group(2))
    name, place = (text, "")
    if locality:
        name = text[: locality[0]].strip()
        place = f"{locality[1]} {_title_words(locality[2])}"
    fixed = next((v for k, v in _FIXED_CASE.items() if name.startswith(k)), None)
    if fixed:
        name = fixed + name[len(fixed):]
    elif name:
        words = name.split()
        # "Sở tài chính" -> "Sở Tài chính"; after "và" the next field name is capitalised too.
        out = [words[0][:1].upper() + words[0][1:]]
        capitalise_next = words[0] in ("sở", "bộ", "cục", "ban", "phòng", "trường", "đài")
        for word in words[1:]:
            out.append(word[:1].upper() + word[1:] if capitalise_next else word)
            capitalise_next = word == "và"
        name = " ".join(out)
    if not name:  # the locality opened the block: "TỈNH TÂY NINH"
        return place[:1].upper() + place[1:]
    # Names of bodies keep their capital inside a longer name ("Thường trực Hội đồng …").
    name = re.sub(r"(?<=\S )(ủy ban nhân dân|hội đồng nhân dân)",
                  lambda m: m.group(1)[:1].upper() + m.group(1)[1:], name)
    return collapse_spaces(f"{name} {place}")


def issuer_of(block: list[str]) -> str | None:
    """The issuing body from the top-left block: managing body lines, then issuing body lines."""
    lines = [line for line in block if line and is_upper(line)]
    if not lines:
        return None
    # A head word opens a body unless the line merely continues the one before ("… VÀ MÔI /
    # TRƯỜNG" is one name wrapped, not an issuer "Trường").
    heads = [i for i, line in enumerate(lines) if fold(line).startswith(_ISSUER_HEADS)
             and len(line.split()) > 1
             and not (i and fold(lines[i - 1]).endswith((" và", ",", "-")))]
    start = heads[-1] if heads else 0
    issuing = " ".join(lines[start:])
    managing = " ".join(lines[:start])
    result = _organisation_case(issuing)
    if managing and not any(f" {w} " in f" {fold(issuing)} " for w in _LOCALITIES):
        parent = _organisation_case(managing)
        if fold(issuing).startswith("văn phòng"):
            result = f"{result} {parent}"  # the Office *of* the managing body
        else:
            place = re.search(rf"\b({'|'.join(_LOCALITIES)})\b.*$", parent)
            if place:
                result = f"{result} {place.group(0)}"
    return result
