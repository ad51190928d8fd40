"""Who applies in a dossier mail: a company's or a person's name, an email address, a phone.

The sender is not always the applicant. A one-stop unit (Trung tâm Phục vụ hành chính công,
Bộ phận Một cửa, the post office) forwards a citizen's dossier: the applicant, their email
and phone are the ones the body names, never the unit's. A company's staff send for the
company: the applicant is the company, reached at the sender's address. A relative or an
authorised person sends for someone: the applicant is the one they act for.

The name is read from cues, strongest first: acting for someone ("thay mặt", "nộp hộ", "được
… ủy quyền"), an applicant's field ("Người nộp hồ sơ:", "Họ và tên:", "Tên tổ chức:"), an
organisation that is the subject of the mail ("Công ty … gửi hồ sơ"), "công ty chúng tôi",
"hồ sơ … của ông …", the sender introducing themselves ("Tôi tên là …"), then the same in
the attachments, the signature, and the sender's display name.

Many write without diacritics ("Toi ten la Nguyen Van An, sdt 0912345678"): the cues are
looked for in a copy of each text stripped of its accents, letter for letter, and the names
read from the text as written.

Pure and linear in the text whatever it holds: each cue is found by one pass of a pattern
and read by looking at most a line's first characters after it; texts and cues are capped.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import yaml

from daemon.models import Applicant, ParsedMail
from daemon.textnorm import fold

WORDS_FILE = Path(__file__).with_name("applicant_words.yaml")
MAX_TEXT = 64 * 1024  # characters of each text read: a dossier names its applicant early
MAX_ATTACHMENTS = 12  # attachment texts read
MAX_CUES = 300  # cues of one kind read in one text
MAX_NUMBERS = 500  # digit runs of one text looked at for a phone
_NAME_SPAN = 120  # characters after a cue where a name may be read


def _load_words() -> dict[str, tuple[str, ...]]:
    with WORDS_FILE.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return {key: tuple(str(word) for word in words) for key, words in data.items()}


_WORDS = _load_words()


def _bare(text: str) -> str:
    """`text` without its accents, letter for letter (same length: positions in one are
    positions in the other): "Công ty" -> "Cong ty", "Đ" -> "D"."""
    table: dict[int, str] = {}
    for char in set(text):
        if ord(char) > 127:
            base = {"đ": "d", "Đ": "D"}.get(char) or unicodedata.normalize("NFD", char)[0]
            if base != char:
                table[ord(char)] = base
    return text.translate(table)


# The letters that `re.IGNORECASE` matches with an ASCII letter besides its two cases (found
# by trying every code point; tests/test_applicant_cues.py tries them again).
_ALSO_ASCII = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}


def _folded(bare: str) -> str:
    """`bare` (a `_bare` text) in lower case as `re.IGNORECASE` compares letters with the
    ASCII letters of a cue, letter for letter: a cue compiled without the flag finds in it
    what it found with the flag in `bare`, at the same places, and fast (the flag makes the
    regex engine try a whole alternation of words at every position)."""
    table = {ord(char): _ALSO_ASCII.get(char) or char.lower() for char in set(bare)
             if char in _ALSO_ASCII or "A" <= char <= "Z"}
    return bare.translate(table) if table else bare


def _cue(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A pattern written in Vietnamese, in lower case, to be matched on `_folded` text."""
    bare = _bare(pattern)
    # Escapes (\b, \n) and group names are not letters to match.
    letters = re.sub(r"\\.|\(\?P<\w+>|\(\?P=\w+\)", "", bare)
    if any(char.isupper() or (char.isalpha() and not char.isascii()) for char in letters):
        raise ValueError(f"a cue's letters are lower-case ASCII once bare: {pattern!r}")
    return re.compile(bare, flags)


def _alternation(words: tuple[str, ...]) -> str:
    """A regex alternation of `words`, longest first, spaces as the single space of `_flat`."""
    return "|".join(re.escape(w.lower()).replace("\\ ", " ")
                    for w in sorted(words, key=len, reverse=True))


_ORG_FORM = _cue(rf"(?:{_alternation(_WORDS['organisation_forms'])})\b")
_FAMILY_NAMES = frozenset(_bare(fold(w)) for w in _WORDS["family_names"])
_TITLES = frozenset(fold(w) for w in _WORDS["before_a_name"])
_TITLES_BARE = frozenset(_bare(w) for w in _TITLES)  # for a line written without diacritics
_TITLE_WORDS = max(len(w.split()) for w in _TITLES)
_INTERMEDIARIES = tuple(fold(w, accents=False) for w in _WORDS["intermediaries"])
_INTERMEDIARY_BOXES = re.compile(
    rf"(?:{_alternation(_WORDS['intermediary_mailboxes'])})", re.I)
_INTERMEDIARY_DOMAINS = _WORDS["intermediary_domains"]


class _Words:
    """A set of words, matched as written, or without accents when written so: `bare`, or
    the words themselves without accents less the family names ("Tô" is not "Tổ")."""

    def __init__(self, words: set[str] | tuple[str, ...], bare: set[str] | None = None
                 ) -> None:
        self.written = frozenset(fold(w) for w in words)
        self.bare = frozenset(bare if bare is not None else
                              {_bare(w) for w in self.written} - _FAMILY_NAMES)

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        folded = fold(word)
        return folded in self.written or (word.isascii() and folded in self.bare)


_NOT_A_NAME_START = _Words(_WORDS["not_a_name_start"])
# Words that end a person's name: the labels and verbs written right after it; without
# accents only those that are no one's name ("Tai" may be Tài as well as tại).
_AFTER_A_NAME = _Words({
    "sđt", "đt", "đtdđ", "dđ", "email", "e-mail", "số", "sinh", "cccd", "cmnd", "mst",
    "tel", "fax", "zalo", "địa", "giám", "phòng", "xin", "kính", "gửi", "nộp", "đề", "trân",
    "mobile", "phone", "hotline", "ngày", "tại", "chức", "hiện", "thường", "nơi"},
    bare={"sdt", "dt", "dtdd", "dd", "so", "cccd", "cmnd", "mst", "email", "e-mail", "tel",
          "fax", "zalo", "mobile", "phone", "hotline", "gui", "nop", "xin", "dia", "ngay"})
# Lower-case words that end an organisation's name: verbs and linking words a name never has
# ("Công ty TNHH An Phát gửi hồ sơ", "thay mặt Hợp tác xã Tân Tiến xin …").
_AFTER_AN_ORG = _Words({
    "gửi", "kính", "xin", "nộp", "đề", "trân", "chuyển", "có", "đã", "đang", "sẽ", "được",
    "bị", "là", "tại", "theo", "về", "cho", "của", "do", "với", "hiện", "thì", "mà", "nên",
    "vì", "để", "trong", "từ", "đến", "ở", "chúng", "tôi", "em", "này", "đó", "đây", "cam",
    "báo", "đăng", "gồm", "kèm", "trụ", "địa", "mã", "thay", "đại", "ủy", "ký", "nay",
    "chịu", "như", "sau", "trước", "muốn", "cần", "thực", "trình", "ạ", "nhé", "nha"})
# What an organisation that is the subject of a sentence does next ("Công ty … (MST …) kính
# gửi hồ sơ", "Hợp tác xã … xin đề nghị").
_ORG_ACTS = _cue(
    r" ?(?:\([^()\n]{0,80}\))?,? ?(?:xin|kính|gửi|nộp|đề nghị|trân trọng|chuyển|cam kết|"
    r"báo cáo|đăng ký|trình)\b")

# Cues, each found by one pass over a text. Labels of people who are not the applicant (the
# unit's officer, the legal representative, the contact) are matched with the applicant's
# labels so that their words are never read as one ("Người được ủy quyền: …").
_LABELS = _cue(
    r"\b(?:(?P<other>người (?:được ủy quyền|đại diện(?: theo pháp luật)?|liên hệ|tiếp nhận|"
    r"nhận|ký|hướng dẫn|xử lý)|cán bộ(?: tiếp nhận)?|chuyên viên|công chức|giám đốc)"
    r"|(?:(?:họ (?:và )?tên|tên) )?(?:người (?:nộp(?: hồ sơ)?|đề nghị|yêu cầu|làm đơn|"
    r"đứng tên|ủy quyền)|chủ (?:đầu tư|hộ|hồ sơ|sở hữu|cơ sở))"
    r"|họ (?:và )?tên|tên (?:(?:tổ chức|cá nhân)(?: ?[,/] ?(?:tổ chức|cá nhân))?|doanh nghiệp|"
    r"đơn vị|cơ sở|công ty|hợp tác xã|hộ kinh doanh)|ông ?(?:/ ?bà|\(bà\))"
    r"|(?:tổ chức|doanh nghiệp|đơn vị|cá nhân|công dân)(?: (?:đề nghị|nộp hồ sơ|yêu cầu|nộp))?"
    r"|applicant|full name)"
    r"(?: \([^()\n]{0,60}\))?(?: ?[:：|] ?\n? ?| ?\n ?)")  # a form's table: the value below
_ACTS = _cue(
    r"\b(?:thay mặt(?: cho)?|(?<!người )đại diện (?:cho|của)|(?:nộp|gửi|làm)(?: hồ sơ| thủ "
    r"tục)? (?:hộ(?! sơ)|giúp|giùm|dùm|thay(?: cho)?)|(?:theo|có) (?:giấy )?ủy quyền của|"
    r"(?P<by>(?<!người )được)|(?P<for>(?:nộp|gửi|làm)(?: hồ sơ| thủ tục)? cho)) ")
# "nộp hồ sơ cho" acts for a relative ("cho mẹ tôi là bà …"), not for an official it writes to.
_KIN = _cue(r"\b(?:bố|mẹ|cha|má|con|vợ|chồng|nội|ngoại|ruột|gia đình)\b")
_AUTHORISED = _cue(r" ?(?:\([^()\n]{0,60}\) ?)?ủy quyền\b")
_SELF = _cue(
    r"\b(?:(?:tôi|em|cháu|mình) tên là|tên (?:tôi|em|cháu|mình) là|(?:tôi|em|cháu|mình) "
    r"(?:là|tên)|(?P<bare>tôi|em))(?: ?[:：,] ?| )")
_OF = _cue(r"\bhồ sơ\b[^\n.;,:]{0,80}?\bcủa ")
_OURS = _cue(r"\b(?:công ty|doanh nghiệp|đơn vị|hợp tác xã|htx)(?: của)? chúng tôi\b")
# Where a signature begins: the closing words of a letter, or "--".
_SIGN_OFF = _cue(r"\b(?:trân trọng|kính thư|thân ái|xin cảm ơn|cảm ơn|best regards|"
                 r"regards)\b|^-- ?$", re.M)
_SPACES = re.compile(r"[^\S\n]+")
_TOKEN = re.compile(r"\S+")
_LINE = re.compile(r"[^\n]+")

# Ranks of the name cues, the smallest wins. Cues in the body come before the same cues in
# an attachment; the signature and the display name are the last resorts.
_ACT, _SUBJECT, _LABEL, _OURS_RANK, _OF_RANK, _SELF_RANK, _BARE = range(7)
_IN_ATTACHMENT = 10
_SIGNATURE_ORG, _SIGNATURE_PERSON = 30, 31


def _flat(text: str) -> str:
    """`text` with every run of spaces and tabs (not line ends) made one space, capped."""
    return _SPACES.sub(" ", text)[:MAX_TEXT]


def _line_window(text: str, start: int) -> tuple[int, int]:
    """From `start` to the end of its line, at most `_NAME_SPAN` characters."""
    limit = min(len(text), start + _NAME_SPAN)
    end = text.find("\n", start, limit)
    return start, limit if end < 0 else end


# --- names ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Text:
    """One text of a mail, as written and `_folded` (where cues are looked for); where it
    is (`shift`: 0 in the body, `_IN_ATTACHMENT` in an attachment); whether
    a forwarding unit speaks in it (its own words name no one)."""

    text: str
    shift: int
    units_words: bool = False
    folded: str = ""

    @classmethod
    def of(cls, text: str, shift: int, units_words: bool = False) -> _Text:
        return cls(text, shift, units_words, _folded(_bare(text)))


@dataclass(frozen=True)
class _Name:
    text: str
    start: int
    end: int
    organisation: bool


def _read_org(item: _Text, position: int) -> _Name | None:
    """The organisation whose name begins at `position` ("Công ty TNHH Xây dựng An Phát"):
    its legal form, then words up to punctuation, a line end or a verb."""
    form = _ORG_FORM.match(item.folded, position)
    if form is None:
        return None
    text = item.text
    words = [text[form.start():form.end()]]
    end = form.end()
    capitalised = words[0][0].isupper()
    tokens = list(_TOKEN.finditer(text, *_line_window(text, form.end())))[:16]
    for i, token in enumerate(tokens):
        word = token.group(0)
        stripped = word.rstrip(",.;:)!?")
        if word[0] in "(-–—" or (stripped.islower() and stripped in _AFTER_AN_ORG):
            break
        if _bare(word) == "va" and i + 1 < len(tokens) and tokens[i + 1].group(0)[0].islower():
            break
        if stripped:
            words.append(stripped)
            end = token.start() + len(stripped)
            capitalised = capitalised or stripped[0].isupper()
        if stripped != word:
            break
    if len(words) < 2 or not capitalised:
        return None
    return _Name(" ".join(words), position, end, True)


def _is_name_word(word: str) -> bool:
    return word[0].isupper() and all(c.isalpha() or c in "'’-" for c in word)


def _title_at(tokens: list[re.Match[str]], i: int, titles: frozenset[str]) -> int:
    """How many tokens from `i` on make a title ("ông", "kiến trúc sư", "Ông/Bà"), or 0.
    A capitalised title that is also a family name ("Ông", or "Vo" for vợ and Võ) is one
    only before another family name or title: "Ông Nguyễn Văn An", "Ông (bà) Lê Thị Hà",
    not "Ông Văn Tùng"."""
    for n in range(min(_TITLE_WORDS, len(tokens) - i), 0, -1):
        words = " ".join(t.group(0) for t in tokens[i:i + n]).strip(".,:()")
        folded = fold(words)
        if (_bare(folded) if titles is _TITLES_BARE else folded) not in titles:
            continue
        if n == 1 and words[:1].isupper() and _bare(folded) in _FAMILY_NAMES:
            after = fold(tokens[i + 1].group(0).strip(".,:()")) if i + 1 < len(tokens) else ""
            return 1 if _bare(after) in _FAMILY_NAMES or after in _TITLES else 0
        return n
    return 0


def _after_titles(item: _Text, position: int) -> int:
    """Where a name begins after any titles or kinship words at `position` ("ông", "mẹ tôi
    là bà"), read without accents only on a line written without them ("ong", "ba")."""
    start, end = _line_window(item.text, position)
    titles = _TITLES_BARE if item.text[start:end].isascii() else _TITLES
    tokens = list(islice(_TOKEN.finditer(item.text, start, end), 12))
    i = 0
    while i < len(tokens) and (n := _title_at(tokens, i, titles)):
        i += n
    return position if i == 0 else tokens[i].start() if i < len(tokens) else end


def _read_person(item: _Text, position: int, strict: bool) -> _Name | None:
    """A person's name at `position`, after any title or kinship word: two to seven
    capitalised words. `strict` (a weak cue with no title before the name): the first word
    must be a family name."""
    text = item.text
    start = _after_titles(item, position)
    strict = strict and start == position
    words: list[str] = []
    end = start
    for token in _TOKEN.finditer(text, *_line_window(text, start)):
        word = token.group(0)
        stripped = word.rstrip(",.;:)!?")
        if not stripped or not _is_name_word(stripped) or stripped in _AFTER_A_NAME:
            break
        words.append(stripped)
        end = token.start() + len(stripped)
        if stripped != word or len(words) == 7:
            break
    if len(words) < 2 or words[0] in _NOT_A_NAME_START:
        return None
    if strict and _bare(fold(words[0])) not in _FAMILY_NAMES and not words[0].startswith("H'"):
        return None
    if all(w.isupper() for w in words) and any(len(w) > 1 for w in words):
        words = [w.capitalize() for w in words]  # "NGUYỄN VĂN AN", as forms ask
    return _Name(" ".join(words), start, end, False)


def _read_name(item: _Text, position: int, strict: bool) -> _Name | None:
    """An organisation or a person named at `position` (after any title)."""
    return _read_org(item, _after_titles(item, position)) or _read_person(
        item, position, strict)


@dataclass(frozen=True)
class _Found:
    rank: int
    name: _Name
    text: int  # index of the text it was read in


class _Organisations:
    """The organisations named in one text, by where they begin."""

    def __init__(self, item: _Text) -> None:
        self.names = [n for m in islice(_ORG_FORM.finditer(item.folded), MAX_CUES)
                      if (n := _read_org(item, m.start()))]
        self.starts = [n.start for n in self.names]

    def nearest(self, position: int) -> _Name | None:
        """The last organisation named before `position`, else the first one after it."""
        i = bisect.bisect_left(self.starts, position)
        if i > 0:
            return self.names[i - 1]
        return self.names[0] if self.names else None


def _as_subject(item: _Text, org: _Name) -> bool:
    """Whether `org` begins a line or a sentence and acts ("Công ty … gửi hồ sơ")."""
    before = item.text[max(0, org.start - 2):org.start]
    at_start = org.start == 0 or before.endswith("\n") or (
        len(before) == 2 and before[1] == " " and before[0] in ".!?:,")
    return at_start and _ORG_ACTS.match(item.folded, org.end) is not None


def _cues(item: _Text, index: int) -> Iterator[_Found]:
    """Every applicant's name a cue of the text points at. A forwarding unit's own words
    ("tôi", "chúng tôi", its signature) never name the applicant."""
    folded, shift = item.folded, item.shift
    for cue in islice(_ACTS.finditer(folded), MAX_CUES):
        name = _read_name(item, cue.end(), strict=False)
        if not name or (cue.group("by") and not _AUTHORISED.match(folded, name.end)):
            continue
        if cue.group("for") and not name.organisation and not _KIN.search(
                folded, cue.end(), name.start):
            continue
        yield _Found(_ACT + shift, name, index)
    for cue in islice(_LABELS.finditer(folded), MAX_CUES):
        if not cue.group("other") and (name := _read_name(item, cue.end(), strict=False)):
            yield _Found(_LABEL + shift, name, index)
    organisations = _Organisations(item)
    for org in organisations.names:
        if _as_subject(item, org):
            yield _Found(_SUBJECT + shift, org, index)
    for cue in islice(_OF.finditer(folded), MAX_CUES):
        # "hồ sơ thiết kế của Công ty …" names who drew the plans; "hồ sơ của Công ty …",
        # or a forwarding unit's "hồ sơ (thủ tục …) của Công ty …", who applies.
        name = _read_name(item, cue.end(), strict=True)
        if name and (not name.organisation or item.units_words
                     or cue.group(0).split()[2:3] == ["cua"]):
            yield _Found(_OF_RANK + shift, name, index)
    if item.units_words:
        return
    for cue in islice(_OURS.finditer(folded), MAX_CUES):
        if ours := organisations.nearest(cue.start()):
            yield _Found(_OURS_RANK + shift, ours, index)
    for cue in islice(_SELF.finditer(folded), MAX_CUES):
        is_bare = cue.group("bare") is not None
        if name := _read_person(item, cue.end(), strict=is_bare):
            yield _Found((_BARE if is_bare else _SELF_RANK) + shift, name, index)


def _signature(body: _Text) -> Iterator[_Found]:
    """An organisation or a person signing the body: the six lines after its last closing
    words, else its last four lines."""
    offset = max(0, len(body.text) - 4000)
    marks = list(_SIGN_OFF.finditer(body.folded, offset))
    lines = list(_LINE.finditer(body.text, marks[-1].end() if marks else offset))
    for line in lines[:6] if marks else lines[-4:]:
        org = next((n for m in _ORG_FORM.finditer(body.folded, line.start(), line.end())
                    if (n := _read_org(body, m.start()))), None)
        if org:
            yield _Found(_SIGNATURE_ORG, org, 0)
        elif person := _read_person(body, line.start(), strict=True):
            yield _Found(_SIGNATURE_PERSON, person, 0)


def _best_name(texts: list[_Text], forwarder: bool) -> _Found | None:
    best: _Found | None = None
    found = [f for i, t in enumerate(texts) for f in _cues(t, i)]
    if not forwarder:
        found.extend(_signature(texts[0]))
    for item in found:
        if best is None or (item.rank, item.text, item.name.start) < (
                best.rank, best.text, best.name.start):
            best = item
    return best


# --- who sent it ---------------------------------------------------------------------------

def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _same_body(domain: str, other: str) -> bool:
    """Whether two domains are one body's: equal, or under the same province or ministry
    domain of gov.vn ("hcc.gialai.gov.vn" and "gialai.gov.vn")."""
    if domain == other:
        return True
    ours, theirs = domain.split("."), other.split(".")
    return ours[-2:] == theirs[-2:] == ["gov", "vn"] and ours[-3:] == theirs[-3:]


def _in_domains(domain: str, domains: tuple[str, ...]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in domains)


def is_forwarder(mail: ParsedMail) -> bool:
    """Whether the sender is a one-stop unit forwarding someone's dossier: named so in its
    display name or the opening of the body, or writing from such a unit's mailbox on a
    state or postal domain."""
    named = fold(mail.sender.name, accents=False)
    if any(unit in named for unit in _INTERMEDIARIES):
        return True
    address = mail.sender.email
    if not _in_domains(_domain(address), _INTERMEDIARY_DOMAINS):
        return False
    local = fold(address.partition("@")[0], accents=False)
    opening = fold(mail.body[:400], accents=False)
    return bool(_INTERMEDIARY_BOXES.search(local)) or any(
        unit in opening for unit in _INTERMEDIARIES)


# What a forwarding unit writes about itself on the line of a number or an address: its
# officer, itself, its hotline ("Cán bộ tiếp nhận: … - ĐT: …", "Tôi là …, cán bộ …").
_UNITS_OWN = re.compile(
    r"\b(?:cán bộ|chuyên viên|công chức|người (?:tiếp nhận|hướng dẫn|xử lý)|tôi|chúng tôi|"
    r"trung tâm|bộ phận|một cửa|bưu điện|đường dây nóng|hotline)\b", re.I)


def _units_own(item: _Text, position: int, since: int) -> bool:
    """Whether the line before `position` (from `since` on, the end of the applicant's name
    when it is on that line) speaks of the forwarding unit itself."""
    if not item.units_words:
        return False
    text = item.text
    start = text.rfind("\n", max(0, position - _NAME_SPAN), position) + 1
    start = max(start, since) if since <= position else start
    return _UNITS_OWN.search(text, start, position) is not None


@dataclass(frozen=True)
class _Where:
    """Where the applicant's name was read: which text, its start and its end."""

    text: int
    start: int
    end: int

    def since(self, index: int) -> int:
        return self.end if index == self.text else 0

    def before(self, index: int, position: int) -> bool:
        return (index, position) < (self.text, self.start)


# --- email addresses -----------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@[A-Za-z0-9\-]{1,63}"
                    r"(?:\.[A-Za-z0-9\-]{1,63}){1,8}")
_EMAIL_LABEL = _cue(r"(?:e-?mail|thư điện tử|hộp thư|mail|gmail)\b[^@\n]{0,12}$")
_FORWARDED_FROM = _cue(r"^[> ]*(?:from|từ|người gửi) ?: ?[^\n@]{0,100}?<?(?P<address>"
                       + _EMAIL.pattern.replace("A-Za-z", "a-z") + ")", re.M)
# Where a mail forwarded inside a body begins (Gmail, Outlook, Thunderbird, Apple Mail, in
# English and Vietnamese).
_FORWARDED = _cue(
    r"^[> ]*(?:-{2,} ?(?:forwarded message|original message|thư chuyển tiếp|thư được chuyển "
    r"tiếp|tin nhắn gốc|thư gốc)|begin forwarded message|(?:from|từ|người gửi) ?: ?"
    r"[^\n@]{0,100}@)", re.M)


def _applicant_email(texts: list[_Text], sender: str, where: _Where | None) -> str | None:
    """For a forwarded dossier: the applicant's own address the body gives (labelled ones
    first, the first after the applicant's name first), or the sender of a mail forwarded
    inside it; never one of the forwarding unit's domain or on its own lines."""
    own = _domain(sender)
    labelled: list[tuple[int, int, str]] = []
    others: list[tuple[int, int, str]] = []
    for index, item in enumerate(texts):
        since = where.since(index) if where else 0
        for match in islice(_EMAIL.finditer(item.text), MAX_CUES):
            address = match.group(0).rstrip(".-")
            if _same_body(_domain(address), own) or _units_own(item, match.start(), since):
                continue
            ranked = (1 if where is None or where.before(index, match.start()) else 0,
                      index, address)
            window = item.folded[max(0, match.start() - 40):match.start()]
            if _EMAIL_LABEL.search(window):
                labelled.append(ranked)
            elif not _in_domains(_domain(address), ("gov.vn",)):
                others.append(ranked)  # an agency copied in is not the applicant
    for group in (labelled, others):
        if group:
            return min(group)[2]
    return None


# --- phone numbers -------------------------------------------------------------------------

# A run of digits as phone numbers are written: groups joined by one space, dot or dash, an
# area code in brackets, "+84", "(+84)", "+84 (0)".
_DIGITS = re.compile(r"(?<![\w+.\-/])(?:\( ?\+?|\+ ?)?\d+(?:(?: ?\(0\) ?|\) ?|[ .\-])\d+)*")
_GROUP = re.compile(r"\d+")
# The last label before a number says what it is: a phone, or an identity, tax, account or
# file number that has a phone's shape (a 10-digit tax code beginning with 0).
_NUMBER_LABEL = _cue(
    r"\b(?:(?P<phone>số điện thoại|điện thoại|đtdđ|sđt|đt|dđ|di động|tel|phone|mobile|hotline|"
    r"zalo|liên hệ|lh|số máy|gọi)|(?P<other>mst|mã số|msdn|định danh|cccd|cmnd|căn cước|"
    r"chứng minh|hộ chiếu|passport|tài khoản|stk|số tk|fax|giấy phép|biên nhận|số hồ sơ|"
    r"mã hồ sơ|thửa|tờ bản đồ|giấy chứng nhận|gcn|mã))\b")


def _national(digits: str, international: bool) -> str | None:
    """`digits` in the national form (0 and 9 or 10 digits) if they are a Vietnamese phone
    number: a mobile (03, 05, 07, 08, 09 and 8 digits) or a landline (02 and 9 digits)."""
    if digits.startswith("0084"):
        digits, international = digits[2:], True
    if digits.startswith("84") and (international or len(digits) in (11, 12)):
        digits = "0" + digits[2:]
    elif international:
        return None
    if len(digits) == 10 and digits[1] in "35789":
        return digits
    if len(digits) == 11 and digits[1] == "2":
        return digits
    return None


def _phone_of_run(run: str) -> str | None:
    """The phone number a run of digits is, or begins with ("0912 345 678 2 bản")."""
    international = "+" in run or run.startswith("(84")
    cleaned = run.replace("(0)", "")
    groups = _GROUP.findall(cleaned)
    digits = ""
    for group in groups:
        digits += group
        if len(digits) > 14:  # "0084" and 10 digits at most
            break
        if phone := _national(digits, international):
            return phone
    return None


@dataclass(frozen=True)
class _Phone:
    number: str
    labelled: bool
    text: int
    start: int


def _label_window(item: _Text, position: int) -> str:
    """The 40 characters before `position` on its line, where a number's label is; for a
    number alone at the start of its line (a form's table), the line above."""
    start = max(0, position - 40)
    line_start = item.text.rfind("\n", start, position) + 1
    if line_start and not item.text[line_start:position].strip():
        end = line_start - 1
        return item.folded[max(item.text.rfind("\n", max(0, end - 40), end) + 1, end - 40):end]
    return item.folded[max(line_start, start):position]


def _phones(item: _Text, index: int, since: int) -> Iterator[_Phone]:
    text = item.text
    for run in islice(_DIGITS.finditer(text), MAX_NUMBERS):
        if not (number := _phone_of_run(run.group(0))):
            continue
        labels = list(_NUMBER_LABEL.finditer(_label_window(item, run.start())))
        phone_label = any(label.group("phone") for label in labels)
        if labels and (last := labels[-1]).group("other") and not (
                phone_label and last.group(0).lower() == "fax"):  # "ĐT/Fax: …" is a phone
            continue
        if _units_own(item, run.start(), since):
            continue
        yield _Phone(number, phone_label, index, run.start())


def _phone(texts: list[_Text], where: _Where | None) -> str | None:
    """The applicant's phone: a labelled number before an unlabelled one, the first after
    the applicant's name before any other, the body before the attachments."""
    best: tuple[tuple[bool, bool, int, int], str] | None = None
    for index, item in enumerate(texts):
        for phone in _phones(item, index, where.since(index) if where else 0):
            far = where is None or where.before(index, phone.start)
            key = (not phone.labelled, far, index, phone.start)
            if key[:2] == (False, False):
                return phone.number  # the first labelled number after the name: the best
            if best is None or key < best[0]:
                best = (key, phone.number)
    return best[1] if best else None


def _texts(mail: ParsedMail, forwarder: bool) -> list[_Text]:
    """The texts of a mail in the order they are read: the body (a forwarding unit's own
    words, then the mail it forwards, if any), then the attachments."""
    body = _flat(mail.body)
    forms = [_Text.of(_flat(a.text), _IN_ATTACHMENT)
             for a in mail.attachments[:MAX_ATTACHMENTS] if a.text]
    mark = _FORWARDED.search(_folded(_bare(body))) if forwarder else None
    if mark is None:
        return [_Text.of(body, 0, forwarder), *forms]
    return [_Text.of(body[:mark.start()], 0, True), _Text.of(body[mark.start():], 0), *forms]


def _forwarded_sender(texts: list[_Text], own: str) -> str | None:
    """The sender of the mail a forwarding unit forwards, unless it is one of the unit's."""
    body = [t for t in texts if not t.shift]
    found = _FORWARDED_FROM.search("".join(t.folded for t in body))
    if found is None:
        return None
    # As written but for its accents (the folded text has it in lower case).
    address = _bare("".join(t.text for t in body))[found.start("address"):found.end("address")]
    return None if _same_body(_domain(address), own) else address


def applicant(mail: ParsedMail) -> Applicant:
    """Who applies in a dossier mail: its name, email address and phone number."""
    forwarder = is_forwarder(mail)
    texts = _texts(mail, forwarder)
    found = _best_name(texts, forwarder)
    where = _Where(found.text, found.name.start, found.name.end) if found else None
    if forwarder:
        email = _applicant_email(texts, mail.sender.email, where) or _forwarded_sender(
            texts, _domain(mail.sender.email))
        name = found.name.text if found else None
    else:
        email = mail.sender.email or None
        name = found.name.text if found else (mail.sender.name or None)
    return Applicant(name=name, email=email, phone=_phone(texts, where))
