"""Is a dossier complete? Its procedure's required documents (rules/procedures.yaml) looked for
in the attachments' names and the titles of their text, and in the mail's "kèm theo: …" list;
and the request to complete it (Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ), rendered from
templates the agency can edit like the receipt slip's.

Pure: a procedure, attachments and a body in, a verdict out.
- complete: every required document is recognised: the receipt slip goes.
- missing: some are not, and nothing unread or unrecognised could be them: the request to
  complete the dossier goes, listing exactly those.
- uncertain: the procedure is unknown, or a missing document may hide in a part that could not
  be read (a scan without text whose name says nothing, a withheld or broken file), or the mail
  says it encloses a document no attachment shows: the clerk decides.

Matching is by whole words of a name folded to lower case without accents; `_` `-` `.` and
CamelCase split words, and words written together match too ("GCNQSDĐ"). A word written
with accents on both sides must agree in its accents too ("sơ đồ" is not "sổ đỏ").
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.models import Attachment
from daemon.office.receipt import DossierHeading, templates
from daemon.routing.rules import Procedure, Requirement
from daemon.textnorm import fold, nfc, strip_accents

NAME_MAX = 300  # characters of a name looked at
TEXT_MAX = 20_000  # characters of an attachment's text searched for titles
TITLE_LINES = 60  # title lines kept per text
BODY_MAX = 20_000  # characters of the mail body searched for the "kèm theo" list
LIST_MAX = 2_000  # characters of one enclosure list
PATH_MAX = 2_000  # characters of an archive member's path
PARTS_MAX = 200  # parts (attachments and archive members) looked at
ARCHIVE_ENDINGS = (".zip", ".rar", ".7z", ".tar", ".gz", ".tgz")

_WORD = re.compile(r"[^\W_]+")
# Where a mail lists what it encloses: "Hồ sơ gồm:", "kèm theo:", "gửi kèm …".
_ENCLOSED = re.compile(r"\b(?:kem theo|gui kem|dinh kem|ho so gom|gom co|bao gom)\b")


class State(enum.StrEnum):
    COMPLETE = "complete"
    MISSING = "missing"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Verdict:
    """What the check found: the required documents missing (names), the documents recognised
    (name and the files that carry it), and for an uncertain dossier why, for the clerk."""

    state: State
    missing: tuple[str, ...] = ()
    received: tuple[tuple[str, tuple[str, ...]], ...] = ()
    others: tuple[str, ...] = ()  # files that carry none of the procedure's documents
    reasons: tuple[str, ...] = ()
    # No procedure of the catalogue was identified: nothing could be checked.
    unknown_procedure: bool = False

    def as_json(self) -> dict[str, object]:
        return {"state": self.state.value, "missing": list(self.missing),
                "received": {name: list(files) for name, files in self.received},
                "others": list(self.others), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class _Word:
    bare: str  # without accents
    marked: str  # with them (folded case and tone placement)


Words = tuple[_Word, ...]


def words(text: str, limit: int = NAME_MAX) -> Words:
    """The words of a name or a line (its first `limit` characters) as matching sees them."""
    spaced = _uncamel(nfc(text[:limit]))
    return tuple(_Word(strip_accents(w), w) for w in _WORD.findall(fold(spaced)))


def _uncamel(text: str) -> str:
    """"DonDeNghi" as "Don De Nghi": a space where a lower-case letter meets an upper-case one."""
    out = []
    previous = ""
    for char in text:
        if previous.islower() and char.isupper():
            out.append(" ")
        out.append(char)
        previous = char
    return "".join(out)


def _same(hay: _Word, needle: _Word) -> bool:
    if hay.bare != needle.bare:
        return False
    # Accents count only when both sides wrote them.
    return hay.marked == hay.bare or needle.marked == needle.bare or hay.marked == needle.marked


def contains(hay: Words, needle: Words) -> bool:
    """Whether the phrase `needle` stands in `hay` as whole words, or written together
    ("gcnqsdd" for "GCN QSDĐ", "don denghi" for "đơn đề nghị"). Linear in len(hay) times the
    needle's length."""
    if not needle:
        return False
    compact = "".join(w.bare for w in needle)
    for start in range(len(hay)):
        window = hay[start:start + len(needle)]
        if len(window) == len(needle) and all(map(_same, window, needle)):
            return True
        joined = ""
        for count, word in enumerate(hay[start:], 1):
            joined += word.bare
            if joined == compact and count != len(needle):
                return True
            if len(joined) >= len(compact) or not compact.startswith(joined):
                break
    return False


def recognises(requirement: Requirement, text: str, limit: int = NAME_MAX) -> bool:
    """Whether a file name, title or list names this document."""
    hay = words(text, limit)
    return any(contains(hay, words(phrase)) for phrase in (requirement.name,
                                                            *requirement.match))


@dataclass(frozen=True)
class Part:
    """One file of the dossier: an attachment or a member of an archive."""

    path: tuple[str, ...]  # the attachment's name, then the members' folders and name
    titles: tuple[str, ...]  # the title lines of its text
    unread: bool  # its content could not be read (a scan, a withheld or broken file)
    archive: bool = False  # an archive none of whose members could be read


    @property
    def name(self) -> str:
        return "/".join(self.path)


def _titles(text: str) -> tuple[str, ...]:
    """The lines of a text that name it: upper-case lines (joined when a title wraps) and
    the first two lines, as forms and scans with a text layer have them."""
    lines = [line.strip() for line in text[:TEXT_MAX].splitlines() if line.strip()]
    found = lines[:2]
    block: list[str] = []
    for line in lines:
        letters = [c for c in line if c.isalpha()]
        if len(letters) > 1 and all(c.isupper() for c in letters):
            block.append(line)
            continue
        if block:
            found.append(" ".join(block))
            block = []
    if block:
        found.append(" ".join(block))
    return tuple(line[:NAME_MAX] for line in found[:TITLE_LINES])


def _member(entry: str, archive: str) -> str | None:
    """The member path an `unread` entry of an archive names ("a.zip/x/y.jpg: reason")."""
    path = entry.split(": ", 1)[0]
    return path if path.startswith(archive + "/") else None


def _path(where: str) -> tuple[str, ...]:
    return tuple(name[:NAME_MAX] for name in where[:PATH_MAX].split("/"))


def _is_archive(item: Attachment) -> bool:
    kind = item.content_type.lower()
    return (item.name.lower().endswith(ARCHIVE_ENDINGS) or "zip" in kind or "compressed" in kind
            or "archive" in kind)


def parts(attachments: Sequence[Attachment]) -> list[Part]:
    """Every file of the dossier, archives opened as the reader opened them."""
    found: list[Part] = []
    for item in attachments:
        members = [(where, text) for where, text in item.pieces if where != "body"]
        unread_members = [m for e in item.unread if (m := _member(e, item.name))]
        own_unread = item.withheld is not None or len(unread_members) < len(item.unread)
        if (not members and not unread_members) or own_unread:
            unread = own_unread and not item.text
            found.append(Part((item.name[:NAME_MAX],), _titles(item.text), unread,
                              unread and not members and _is_archive(item)))
        found += [Part(_path(where), _titles(text), False) for where, text in members]
        found += [Part(_path(m), (), True) for m in unread_members]
    return found[:PARTS_MAX]


def enclosed(body: str) -> str:
    """The mail's list of what it encloses ("Hồ sơ gồm: 1. … 2. …", "kèm theo đơn và …"):
    the text after each such phrase up to the next blank line."""
    text = fold(body[:BODY_MAX].replace("\n", " \x00 "), accents=False)
    lists = []
    for found in _ENCLOSED.finditer(text):
        rest = text[found.end():found.end() + LIST_MAX]
        lists.append(rest.split("\x00 \x00", 1)[0].replace("\x00", " "))
    return " ".join(lists)


def _carries(requirement: Requirement, part: Part) -> bool:
    return any(recognises(requirement, text) for text in (*part.path, *part.titles))


def check(procedure: Procedure | None, attachments: Sequence[Attachment],
          body: str = "") -> Verdict:
    """The dossier's verdict for its procedure (see the module's docstring)."""
    if procedure is None:
        return Verdict(State.UNCERTAIN, reasons=(
            "chưa xác định được thủ tục hành chính của hồ sơ",), unknown_procedure=True)
    files = parts(attachments)
    carried = {r.name: tuple(p.name for p in files if _carries(r, p))
               for r in procedure.requirements}
    known = {name for names in carried.values() for name in names}
    others = tuple(p.name for p in files if p.name not in known)
    received = tuple((name, names) for name, names in carried.items() if names)
    missing = tuple(r.name for r in procedure.requirements
                    if not r.optional and not carried[r.name])
    if not missing:
        return Verdict(State.COMPLETE, received=received, others=others)
    reasons = []
    unread = [p.name for p in files if p.unread and p.name not in known]
    if unread:
        reasons.append("chưa đọc được nội dung và tên tệp không cho biết là giấy tờ gì: "
                       + "; ".join(unread[:10]) + " — có thể là giấy tờ còn thiếu")
    if closed := [p.name for p in files if p.archive and p.name in known]:
        unread += closed
        reasons.append("chưa mở được tệp nén: " + "; ".join(closed[:10])
                       + " — có thể chứa giấy tờ còn thiếu")
    listing = enclosed(body)
    claimed = [r.name for r in procedure.requirements
               if r.name in missing and recognises(r, listing, BODY_MAX)]
    if claimed and others and not unread:
        reasons.append("thư nêu có gửi kèm " + "; ".join(claimed) + " nhưng chưa nhận ra "
                       "trong các tệp: " + "; ".join(others[:10]))
    state = State.UNCERTAIN if reasons else State.MISSING
    return Verdict(state, missing, received, others, tuple(reasons))


@dataclass(frozen=True)
class SupplementFields(DossierHeading):
    """The fields of the request to complete a dossier (Phiếu yêu cầu bổ sung, hoàn thiện hồ
    sơ): who, which procedure, what is missing and what was received."""

    received: str  # "14 giờ 05 phút, ngày 22/11/2026"
    requested: str  # the date of the request, "22/11/2026"
    missing: tuple[str, ...]
    documents: tuple[str, ...]  # what was received, as the letter lists it
    # True at intake (no receipt given, no appointment yet); False for a case in progress,
    # whose clock stops on the day of the request.
    intake: bool = True


def received_lines(verdict: Verdict) -> tuple[str, ...]:
    """What was received, for the letter: each recognised document with its files, then the
    other files."""
    return (*(f"{name} (tệp: {'; '.join(files)})" for name, files in verdict.received),
            *verdict.others)


def render(fields: SupplementFields, rules_dir: Path | None = None) -> tuple[str, str]:
    """The request as plain text and HTML, from `supplement_request.{txt,html}.j2` (the
    agency's own in `<rules dir>/templates/` first)."""
    env = templates(rules_dir)
    values = asdict(fields)
    return (nfc(env.get_template("supplement_request.txt.j2").render(values)),
            nfc(env.get_template("supplement_request.html.j2").render(values)))
