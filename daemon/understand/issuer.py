"""The issuing body of a document, from the upper-case block at its top left.

Decree 30/2020 Appendix I prints the managing body over the issuing body, in capitals, and
Party documents print the Party committee over its board. This module reads the block as a
row of bodies, each a type word, a name and maybe a place ("SỞ Y TẾ", "UBND TỈNH TÂY NINH"),
names the last one (with its parent where its name alone is not unique) and writes it with
the capitals of Appendix II. The names it cannot derive come from issuer_names.yaml.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from daemon.textnorm import collapse_spaces, fold, nfc

NAMES_FILE = Path(__file__).with_name("issuer_names.yaml")
_MAX_LINES = 8  # a header block is a few lines; more is prose, not read
_MAX_WORDS = 60
_CONNECTORS = ("và", ",", "-", "–", "về", "của", "các", "cho", "trong", "tại")


def is_upper(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def _key(text: str) -> tuple[str, ...]:
    """Comparable words: folded, without the punctuation stuck to them."""
    return tuple(w for w in (w.strip(",.;:()") for w in fold(text).split()) if w)


@dataclass(frozen=True)
class Head:
    name: str  # as written inside a name: "Ủy ban nhân dân"
    kind: str  # council | party | closed | field | company | unique
    alone: bool  # under a ministry-level body, named without it
    bare: bool  # followed by its place's name without the kind word ("Tỉnh ủy Điện Biên")
    lower: bool  # the words after it stay in lower case


@dataclass(frozen=True)
class Names:
    heads: dict[tuple[str, ...], Head]  # folded words (name or abbreviation) -> head
    names: dict[tuple[str, ...], str]  # folded words -> name as written
    proper: dict[tuple[str, ...], str]
    provinces: dict[tuple[str, ...], str]
    localities: frozenset[tuple[str, ...]]
    locality_abbreviations: dict[str, str]
    special_places: dict[str, str]
    capital_place: str
    compounds: frozenset[tuple[str, ...]]
    not_issuer: tuple[str, ...]
    company_words: frozenset[str]


@functools.cache
def names() -> Names:
    data: dict[str, Any] = yaml.safe_load(NAMES_FILE.read_text(encoding="utf-8"))
    heads: dict[tuple[str, ...], Head] = {}
    for entry in data["heads"]:
        head = Head(entry["name"], entry["kind"], bool(entry.get("alone")),
                    bool(entry.get("bare")), bool(entry.get("lower")))
        for spelling in [entry["name"], *entry.get("abbr", [])]:
            heads.setdefault(_key(spelling), head)
    provinces = [*data["provinces"], *data["provinces_before_2025"]]
    return Names(
        heads=heads,
        names={_key(n): n for n in data["names"]},
        proper={_key(n): n for n in data["proper"]},
        provinces={_key(p): p for p in provinces},
        localities=frozenset(_key(w) for w in data["localities"]),
        locality_abbreviations=data["locality_abbreviations"],
        special_places=data["special_places"],
        capital_place=data["capital_place"],
        compounds=frozenset(_key(c) for c in data["compounds"]),
        not_issuer=tuple(data["not_issuer"]),
        company_words=frozenset(data["company_words"]),
    )


# ----- reading the block into bodies ---------------------------------------------------------

@dataclass(frozen=True)
class Place:
    kind: str  # "tỉnh", "xã" … as written before the name; "" for a bare name
    name: str  # as written: "Tây Ninh", "Phan Rang - Tháp Chàm"; "" when only the kind is printed

    def text(self, *, bare: bool = False) -> str:
        if not self.name:
            return self.kind
        special = names().special_places.get(self.name)
        if bare or not self.kind:
            return self.name
        if special and self.kind == "thành phố":
            return special
        if self.kind == "thủ đô":
            return names().capital_place
        return f"{self.kind} {self.name}"


@dataclass
class Body:
    words: list[str]  # the printed words of its type and name, without the place
    place: Place | None = None

    @property
    def head(self) -> Head | None:
        return _head_at(_keys(self.words), 0)[0]


def _keys(words: list[str]) -> list[str]:
    return [k[0] if (k := _key(w)) else "" for w in words]


def _head_at(keys: list[str], i: int) -> tuple[Head | None, int]:
    """The longest head starting at word i, and its length in words."""
    table = names().heads
    for size in range(min(8, len(keys) - i), 0, -1):
        head = table.get(tuple(keys[i:i + size]))
        if head:
            return head, size
    return None, 0


def _words(lines: list[str]) -> tuple[list[str], set[int]]:
    """The block's words with abbreviations of place kinds spelled out, and the indexes of the
    words that open a line."""
    words: list[str] = []
    starts: set[int] = set()
    abbreviations = names().locality_abbreviations
    for line in lines:
        starts.add(len(words))
        # "TP.HỒ CHÍ MINH": the abbreviation glued to the name
        line = re.sub(r"(?i)\b(TP|TX|TT)\.(?=\w)", r"\1. ", line)
        line = re.sub(r"\s+([-–])\s+", r" \1 ", line)
        for word in line.split():
            spelled = abbreviations.get(fold(word))
            words.extend(spelled.upper().split() if spelled else [word])
    return words[:_MAX_WORDS], starts


def _locality_at(keys: list[str], i: int) -> int:
    """The length of a place-kind word at i ("thành phố": 2), or 0."""
    for size in (2, 1):
        if tuple(keys[i:i + size]) in names().localities:
            after = keys[i + size] if i + size < len(keys) else ""
            if size == 1 and keys[i] == "xã" and after == "hội" and not _names_commune(keys, i):
                return 0  # "trật tự xã hội", "Thương binh và Xã hội"
            if size == 1 and i and keys[i] == "xã" and keys[i - 1] in ("tác", "thị"):
                return 0  # "hợp tác xã" is a body, "thị xã" read as one kind
            if after.startswith("ủy") or after in ("đoàn", "đội", "bộ"):
                return 0  # "tỉnh ủy", "tỉnh đoàn": Party and youth bodies
            return size
    return 0


def _names_commune(keys: list[str], i: int) -> bool:
    """'XÃ HỘI …' is a commune only right after a body that takes a place ("UBND XÃ HỘI AN")."""
    return bool(i) and keys[i - 1] in ("dân", "ubnd", "hđnd", "an", "ủy") and i + 2 < len(keys)


def _province_at(keys: list[str], i: int) -> tuple[str, int]:
    table = names().provinces
    for size in range(min(5, len(keys) - i), 0, -1):
        name = table.get(tuple(k for k in keys[i:i + size]))
        if name:
            return name, size
    return "", 0


def _place_name(words: list[str], keys: list[str], starts: set[int], i: int,
                province_level: bool) -> tuple[str, int]:
    """The place name from word i: a known province, or the words up to the next body."""
    if province_level:
        name, size = _province_at(keys, i)
        if size:
            return name, size
    end = i
    while end < len(words) and end - i < 6:
        if end > i and _head_at(keys, end)[0] and (end in starts or _head_at(keys, end)[1] > 1):
            break
        end += 1
    return _title(words[i:end]), end - i


def _bodies(lines: list[str]) -> list[Body]:
    words, starts = _words(lines)
    keys = _keys(words)
    bodies: list[Body] = []
    current: list[str] = []
    i = 0
    while i < len(words):
        if current and _opens_body(words, keys, starts, i) \
                and _known_at(keys, i - len(current), names().names)[1] <= len(current):
            bodies.append(Body(current))
            current = []
        kind_size = _locality_at(keys, i)
        committee = _trailing_head(current)
        bare = committee is not None and committee.bare and _province_at(keys, i)[1] > 0
        if kind_size or bare:
            kind = " ".join(keys[i:i + kind_size])
            name, size = _place_name(words, keys, starts, i + kind_size,
                                     kind in ("tỉnh", "thành phố", "thủ đô") or not kind_size)
            bodies.append(Body(current, Place(kind, name)))
            current = []
            i += kind_size + size
            continue
        current.append(words[i])
        i += 1
    if current:
        bodies.append(Body(current))
    return [b for b in bodies if b.words or b.place]


def _opens_body(words: list[str], keys: list[str], starts: set[int], i: int) -> bool:
    """A line that starts with a body's type word opens a new body, unless it only carries on
    the line before (a name wrapped after "và", or the second half of a word pair)."""
    if i not in starts or not _head_at(keys, i)[0]:
        return False
    previous = words[i - 1]
    if fold(previous) in _CONNECTORS or previous.endswith((",", "-")):
        return False
    if (keys[i - 1], keys[i]) in names().compounds or _head_at(keys, i - 1)[1] > 1:
        return False  # "PHỤC / VỤ", "ỦY / BAN NHÂN DÂN": one word or type over two lines
    line_end = min((s for s in starts if s > i), default=len(words))
    return line_end - i > 1 or _head_at(keys, i)[1] > 1


def _trailing_head(words: list[str]) -> Head | None:
    """The body type that ends these words: "BAN TỔ CHỨC TỈNH ỦY" ends with Tỉnh ủy."""
    keys = _keys(words)
    for size in (2, 1):
        if len(keys) >= size and (head := names().heads.get(tuple(keys[-size:]))):
            return head
    return None


# ----- writing a body's name -----------------------------------------------------------------

def _title(words: list[str]) -> str:
    """A proper name: each syllable capitalised ("PHAN RANG - THÁP CHÀM"), Roman numerals kept."""
    return " ".join(w if re.fullmatch(r"[IVXL]+", w) else w[:1].upper() + w[1:].lower()
                    for w in words)


def _known_at(keys: list[str], i: int, table: dict[tuple[str, ...], str]) -> tuple[str, int]:
    for size in range(min(12, len(keys) - i), 0, -1):
        name = table.get(tuple(keys[i:i + size]))
        if name:
            return name, size
    return "", 0


def _written(words: list[str]) -> str:
    """A body's type and name with the capitals of Appendix II."""
    keys = _keys(words)
    whole, size = _known_at(keys, 0, names().names)
    if size:
        return collapse_spaces(f"{whole} {_rest(words[size:], keys[size:], capital=False)}")
    head, size = _head_at(keys, 0)
    if head is None:
        return _rest(words, keys, capital=True, field=True)
    if head.kind == "company":
        return f"{head.name} {_company(words[size:])}".strip()
    field = head.kind in ("field", "unique") and not head.lower
    rest = _rest(words[size:], keys[size:], capital=field, field=field)
    return collapse_spaces(f"{head.name} {rest}")


def _rest(words: list[str], keys: list[str], *, capital: bool, field: bool = False) -> str:
    """Words after the type word: the first of a field capitalised, the others lower case
    except proper names, nested body names ("Văn phòng Ủy ban nhân dân") and, in names of
    fields, the first word after "và" or a comma ("Văn hóa, Thể thao và Du lịch")."""
    out: list[str] = []
    i = 0
    capital_next = capital
    while i < len(words):
        for table in (names().proper, names().provinces, names().names):
            known, size = _known_at(keys, i, table)
            if size:
                out.append(known)
                i += size
                capital_next = False
                break
        else:
            head, size = _head_at(keys, i)
            if head and head.kind in ("council", "party", "closed"):
                out.append(head.name)
                i += size
                capital_next = False
                continue
            word = words[i].lower()
            out.append(word[:1].upper() + word[1:] if capital_next else word)
            capital_next = field and (keys[i] in ("và", "-", "–") or word.endswith(","))
            i += 1
    return " ".join(out)


def _company(words: list[str]) -> str:
    keep = names().company_words
    return " ".join(w if w.strip(".,") in keep else _title([w]) for w in words)


# ----- naming the issuer ---------------------------------------------------------------------

def _full(body: Body) -> str:
    name = _written(body.words)
    if body.place is None:
        return name
    head = _trailing_head(body.words)
    return collapse_spaces(f"{name} {body.place.text(bare=head is not None and head.bare)}")


def _with_parent(unit: Body, parent: Body) -> str:
    """The unit's name, followed by what makes it unique: its parent's place or whole name."""
    place = parent.place
    if unit.place is not None and (unit.place.name or place is None):
        return _full(unit)
    if unit.place is not None and place is not None:  # "THANH TRA TỈNH" under "UBND TỈNH X"
        return _full(Body(unit.words, Place(unit.place.kind, place.name)))
    own = _written(unit.words)
    head, parent_head = unit.head, parent.head
    if place is not None and place.name and fold(own).endswith(f" {fold(place.name)}"):
        return own  # "BỆNH VIỆN ĐA KHOA ĐỒNG NAI" already names its place
    if place is None:
        return own if head is not None and head.alone else f"{own} {_full(parent)}"
    committee = _trailing_head(unit.words)
    if committee is not None and (committee.kind == "party" or committee == parent_head):
        # "BAN TỔ CHỨC TỈNH ỦY", "THƯỜNG TRỰC HĐND": the unit names its parent; add the place
        return f"{own} {place.text(bare=committee.bare)}"
    if parent_head is not None and parent_head.name == "Ủy ban nhân dân":
        # Its departments are named with the place; its Office with the whole committee.
        office = _keys(unit.words) == ["văn", "phòng"]
        return f"{own} {_full(parent) if office else place.text()}"
    if head is not None and head.kind == "unique" and (
            parent_head is None or parent_head.kind not in ("party", "closed")):
        return f"{own} {place.text()}"
    return f"{own} {_full(parent)}"


def _header_lines(block: list[str]) -> list[str]:
    """The last run of upper-case lines, without the Party's name of the right column."""
    run: list[str] = []
    for raw in block[-40:]:
        line = nfc(raw)[:200]
        for phrase in names().not_issuer:
            line = re.sub(re.escape(phrase), " ", line, flags=re.I)
        line = collapse_spaces(line.strip(" *_=—:"))
        if not any(c.isalpha() for c in line):
            continue
        if is_upper(line):
            run.append(line)
        else:
            run = []
    return run[-_MAX_LINES:]


def issuer_of(block: list[str]) -> str | None:
    """The issuing body from the top-left block: managing body lines, then issuing body lines."""
    lines = _header_lines(block)
    if not lines:
        return None
    bodies = _bodies(lines)
    if not bodies:
        return None
    unit = bodies[-1]
    if not unit.words and unit.place is not None and len(bodies) == 1:
        return _capitalised(unit.place.text())
    if len(bodies) == 1:
        return _capitalised(_full(unit))
    parent = bodies[-2]
    if parent.place is None:  # "UBND TỈNH X / SỞ Y TẾ / TRUNG TÂM …": the Sở is of tỉnh X
        parent.place = next((b.place for b in reversed(bodies[:-2]) if b.place), None)
    return _capitalised(_with_parent(unit, parent))


def _capitalised(name: str) -> str:
    return name[:1].upper() + name[1:]
