"""Legacy Vietnamese byte-font text (TCVN3/ABC and VNI Windows) detected and converted to
Unicode NFC.

Old documents typed with .VnTime (TCVN3) or VNI-Times fonts reach us as text whose bytes were
taken for Latin-1/Windows-1252: "Céng hoµ" for "Cộng hoà", "Coäng hoøa" for "Cộng hòa".
Detection is statistical and conservative: only text with no real Vietnamese letters and
enough characters that Vietnamese never uses is converted.
"""

from __future__ import annotations

import re

from daemon.textnorm import nfc

# TCVN 5712:1993 VN3 (the ".VnTime" fonts; upper-case toned letters use the ".VnTimeH" font
# with these same codes, so they come out lower-case: the loss is in the source).
_TCVN3_LOWER = (
    "àµ á¸ ả¶ ã· ạ¹ ă¨ ằ» ắ¾ ẳ¼ ẵ½ ặÆ â© ầÇ ấÊ ẩÈ ẫÉ ậË đ® èÌ éÐ ẻÎ ẽÏ ẹÑ êª ềÒ ếÕ ểÓ ễÔ ệÖ "
    "ì× íÝ ỉØ ĩÜ ịÞ òß óã ỏá õâ ọä ô« ồå ốè ổæ ỗç ộé ơ¬ ờê ớí ởë ỡì ợî ùï úó ủñ ũò ụô "
    "ư\u00ad ừõ ứø ửö ữ÷ ựù ỳú ýý ỷû ỹü ỵþ Ă¡ Â¢ Đ§ Ê£ Ô¤ Ơ¥ Ư¦"
)
TCVN3 = {pair[1]: pair[0] for pair in _TCVN3_LOWER.split()}
TCVN3["\u00ad"] = "ư"

# VNI Windows: a base letter followed by a mark byte.
_VNI_TONES = {"ø": "\u0300", "ù": "\u0301", "û": "\u0309", "õ": "\u0303", "ï": "\u0323"}
_VNI_TONES_UPPER = {"Ø": "\u0300", "Ù": "\u0301", "Û": "\u0309", "Õ": "\u0303", "Ï": "\u0323"}
# â/ê/ô take their tone in one byte: à á å ã ä; ă takes è é ú ü ë.
_VNI_CIRCUMFLEX = {"â": "", "à": "\u0300", "á": "\u0301", "å": "\u0309", "ã": "\u0303",
                   "ä": "\u0323"}
_VNI_BREVE = {"ê": "", "è": "\u0300", "é": "\u0301", "ú": "\u0309", "ü": "\u0303",
              "ë": "\u0323"}


def _vni_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for upper in (False, True):
        tones = _VNI_TONES_UPPER if upper else _VNI_TONES
        circ = {k.upper(): v for k, v in _VNI_CIRCUMFLEX.items()} if upper else _VNI_CIRCUMFLEX
        breve = {k.upper(): v for k, v in _VNI_BREVE.items()} if upper else _VNI_BREVE
        for base in "aeiouy":
            letter = base.upper() if upper else base
            for mark, tone in tones.items():
                table[letter + mark] = nfc(letter + tone)
        for base in "aeo":
            letter = base.upper() if upper else base
            for mark, tone in circ.items():
                table[letter + mark] = nfc(letter + "\u0302" + tone)
        letter = "A" if upper else "a"
        for mark, tone in breve.items():
            table[letter + mark] = nfc(letter + "\u0306" + tone)
        horn_o, horn_u = ("Ô", "Ö") if upper else ("ô", "ö")
        table[horn_o] = nfc(("O" if upper else "o") + "\u031b")
        table[horn_u] = nfc(("U" if upper else "u") + "\u031b")
        for mark, tone in tones.items():
            table[horn_o + mark] = nfc(("O" if upper else "o") + "\u031b" + tone)
            table[horn_u + mark] = nfc(("U" if upper else "u") + "\u031b" + tone)
    # i takes its tone in one byte, and ỵ has one of its own.
    table.update({"ì": "ì", "í": "í", "æ": "ỉ", "ó": "ĩ", "ò": "ị", "î": "ỵ",
                  "Ì": "Ì", "Í": "Í", "Æ": "Ỉ", "Ó": "Ĩ", "Ò": "Ị", "Î": "Ỵ",
                  "ñ": "đ", "Ñ": "Đ"})
    return table


VNI = _vni_table()
_VNI_PATTERN = re.compile("|".join(sorted(map(re.escape, VNI), key=len, reverse=True)))

# Letters of real Vietnamese that Latin-1 lacks: their presence means the text is Unicode.
_VIETNAMESE = re.compile("[ăĂđĐơƠưƯĩĨũŨ\u1ea0-\u1ef9]")
_TCVN3_ONLY = set("µ¸¶·¹¨»¾¼½Æ©ÇÊÈÉË®ÌÐÎÏÑªÒÕÓÔÖ×ÝØÜÞß«åæç¬ëîïñö÷øûüþ¡¢§£¤¥¦\u00ad")
_TCVN3_FOUND = re.compile("[" + re.escape("".join(sorted(_TCVN3_ONLY))) + "]")
_VNI_SIGNS = re.compile(r"[aeiouyAEIOUY][øùûõïØÙÛÕÏ]|[aeoAEO][âàáåãäÂÀÁÅÃÄ]|[aA][êèéúüëÊÈÉÚÜË]"
                        r"|[ôöÔÖ][øùûõïØÙÛÕÏ]")


def detect(text: str) -> str | None:
    """'tcvn3', 'vni' or None (Unicode, or not enough to tell)."""
    if _VIETNAMESE.search(text):  # most text: found at its first accented word
        return None
    vni = len(_VNI_SIGNS.findall(text))
    tcvn3 = len(_TCVN3_FOUND.findall(text))
    if max(vni, tcvn3) < 3:
        return None  # too few signs of either, however many letters (counted below)
    letters = sum(c.isalpha() for c in text)
    if letters < 20:
        return None
    if vni >= max(3, letters * 0.03) and vni >= tcvn3:
        return "vni"
    if tcvn3 >= max(3, letters * 0.03):
        return "tcvn3"
    return None


def to_unicode(text: str) -> tuple[str, str | None]:
    """Convert legacy byte-font text; return the text (NFC) and the encoding found, if any."""
    found = detect(text)
    if found == "tcvn3":
        return nfc("".join(TCVN3.get(c, c) for c in text)), found
    if found == "vni":
        return nfc(_VNI_PATTERN.sub(lambda m: VNI[m.group(0)], text)), found
    return text, None
