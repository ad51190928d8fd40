"""Phishing marks that need no outside lookup: a domain that imitates one of the agency's
protected domains (its trusted domains, gov.vn by default, and its own), and links whose
visible text shows one address while they lead to another.

A domain is a look-alike when it is not one of the protected domains nor below one, and yet
- it carries every label of a protected domain, in order, among its labels split at dots and
  hyphens ("gov-vn.com", "tayninh-gov.vn", "gov.vn.example.com", "sxd.tayninh.gov.vn.co",
  "gov.com.vn"), or their letters run together on label boundaries ("govvn.org"); or
- read through its skeleton (punycode decoded, Cyrillic and Greek letters that look Latin
  mapped to them, Vietnamese and other diacritics dropped, 0 read as o), it is or imitates a
  protected domain ("gоv.vn" with a Cyrillic о, "xn--gv-...", "gơv.vn").
A real subdomain ("sxd.tayninh.gov.vn") is never a look-alike: gov.vn is handed out by the
state registry (VNNIC) only; but one with a label outside ASCII ("xn--nghan-2ua.gov.vn",
"nghéan.gov.vn") is, since no state domain is written with such letters.
Every function is pure and linear in its input, which is capped.
"""

from __future__ import annotations

import contextlib
import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from daemon.textnorm import header_safe

MAX_DOMAIN = 255  # longer names are not domains (RFC 1035); only this much is looked at
MAX_LINKS = 200  # links of an HTML body compared, at most
MAX_TAG = 2000  # characters of one <a …> tag, and of one link's text, looked at
_SPLIT = re.compile(r"[.\-]+")
# Letters of other scripts that look like Latin ones (the Unicode confusables most used in
# homograph attacks), and digits that pass for letters.
_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h",
    "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ν": "v", "ѵ": "v", "ү": "y",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y", "ϲ": "c", "η": "n",
    # Vietnamese and other letters that no NFKD decomposition strips
    "đ": "d", "ð": "d", "ł": "l", "ø": "o", "ı": "i",
    # digits
    "0": "o",
})


def to_unicode(domain: str) -> str:
    """`domain` with its A-labels ("xn--…") decoded, lower case; a label that does not decode
    stays as it is."""
    labels = []
    for label in domain.lower().strip().rstrip(".")[:MAX_DOMAIN].split("."):
        if label.startswith("xn--"):
            try:
                label = idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                with contextlib.suppress(UnicodeError):  # IDNA 2003, more lenient
                    label = label.encode("ascii").decode("idna")
        labels.append(label)
    return ".".join(labels)


def skeleton(domain: str) -> str:
    """What `domain` looks like to a reader: decoded, confusable letters mapped to Latin ones,
    diacritics dropped, full-width forms folded."""
    text = unicodedata.normalize("NFKC", to_unicode(domain)).lower().translate(_CONFUSABLES)
    bare = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    return bare.translate(_CONFUSABLES)


def _within(domain: str, protected: str) -> bool:
    return domain == protected or domain.endswith("." + protected)


def _labels_in_order(tokens: Sequence[str], wanted: Sequence[str]) -> bool:
    """Whether `wanted` is a subsequence of `tokens` (one pass)."""
    i = 0
    for token in tokens:
        if i < len(wanted) and token == wanted[i]:
            i += 1
    return i == len(wanted)


def _run_together(tokens: Sequence[str], wanted: Sequence[str]) -> bool:
    """Whether the letters of `wanted`, joined, stand in the joined `tokens` from one token
    boundary to another ("govvn" in govvn.org or my-govvn.net; not in agovvn.net)."""
    joined, needle = "".join(tokens), "".join(wanted)
    bounds, at = {0}, 0
    for token in tokens:
        at += len(token)
        bounds.add(at)
    start = joined.find(needle)
    while start >= 0:
        if start in bounds and start + len(needle) in bounds:
            return True
        start = joined.find(needle, start + 1)
    return False


def _scripts(domain: str) -> set[str]:
    """The scripts of the letters of `domain` (first word of their Unicode names)."""
    return {unicodedata.name(c, "?").split()[0] for c in domain if c.isalpha()}


@dataclass(frozen=True)
class Lookalike:
    """A domain that imitates `target`, and why, in Vietnamese (it reaches the clerk in the
    hold reason)."""

    domain: str
    target: str
    why: str


def lookalike(domain: str, protected: Iterable[str]) -> Lookalike | None:
    """Whether `domain` (of a sender, a Reply-To or a link) imitates one of the `protected`
    domains without being one of them or below one; None when it does not.

    Domains of fewer than two labels are not protected (a bare "vn" would make every
    Vietnamese domain a look-alike)."""
    shown = to_unicode(domain)
    if not shown:
        return None
    targets = [t for t in dict.fromkeys(to_unicode(d) for d in protected) if t.count(".") >= 1]
    foreign = sorted(s for s in _scripts(shown) if s != "LATIN")
    latin_only = not foreign
    # Letters outside ASCII (Vietnamese ones with diacritics or đ included) are a disguise
    # even below a protected domain: no state domain is written with them.
    disguised = not shown.isascii()
    how = ("chữ của hệ chữ viết khác (" + ", ".join(foreign) + ")" if not latin_only
           else "chữ có dấu")
    if inside := next((t for t in targets if _within(shown, t)), None):
        if not disguised:
            return None
        return Lookalike(shown, inside, f"{_show(domain, shown)} viết bằng {how}, điều không "
                                        f"tên miền nào của {inside} có")
    seen = skeleton(shown)
    tokens = [t for t in _SPLIT.split(seen) if t]
    for target in targets:
        wanted = [t for t in _SPLIT.split(skeleton(target)) if t]
        if disguised and _within(seen, skeleton(target)):
            mixed = " lẫn chữ Latin" if foreign and "LATIN" in _scripts(shown) else ""
            return Lookalike(shown, target, f"{_show(domain, shown)} trông như "
                                            f"{_show(seen)} nhưng viết bằng {how}{mixed}")
        if _labels_in_order(tokens, wanted):
            return Lookalike(shown, target, f"{_show(domain, shown)} mang các nhãn của "
                                            f"{target} nhưng không thuộc {target}")
        if _run_together(tokens, wanted):
            return Lookalike(shown, target, f"{_show(domain, shown)} viết liền các nhãn của "
                                            f"{target} nhưng không thuộc {target}")
    return None


def _show(domain: str, decoded: str | None = None) -> str:
    shown = header_safe(domain, 120)
    if decoded and decoded != domain.lower():
        shown += f" ({header_safe(decoded, 120)})"
    return shown


# ---------------------------------------------------------------------------------------------
# Links of HTML bodies

_ANCHOR = re.compile(rf"<a\b[^>]{{0,{MAX_TAG}}}>", re.I)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_CLOSE = re.compile(r"</a\s*>", re.I)
_TAG = re.compile(rf"<[^<>]{{0,{MAX_TAG}}}>")
# Something shaped like a host in link text: "https://dichvucong.gov.vn/…", "www.x.vn",
# "dichvucong.gov.vn".
_HOST_IN_TEXT = re.compile(
    r"(?:[a-z][a-z0-9+.\-]{0,15}://)?((?:[\w\-]{1,63}\.){1,10}(?:[a-z]{2,24}|xn--[a-z0-9\-]{1,59}))"
    r"(?![\w\-])", re.I)
# Endings of file names, which link text shows as often as hosts ("ho-so.pdf").
_FILE_ENDINGS = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods",
                           "txt", "rtf", "zip", "rar", "jpg", "jpeg", "png", "gif", "htm",
                           "html", "php", "aspx", "asp", "jsp", "xml", "csv", "exe"})
# Second-level labels under which names are registered (com.vn, gov.vn, co.uk…).
_SECOND_LEVEL = frozenset({"com", "gov", "edu", "org", "net", "co", "ac", "info", "biz",
                           "name", "pro", "health", "int", "or", "ne", "go"})


def links(markup: str) -> tuple[tuple[str, str], ...]:
    """(visible text, href) of the first `MAX_LINKS` <a href> elements of an HTML body; the
    text without tags, entities decoded, white space collapsed. Each anchor looks at most
    `MAX_TAG` characters past its tag for its end."""
    found: list[tuple[str, str]] = []
    for tag in _ANCHOR.finditer(markup):
        if len(found) >= MAX_LINKS:
            break
        href = _HREF.search(tag.group(0))
        if href is None:
            continue
        window = markup[tag.end():tag.end() + MAX_TAG]
        close = _CLOSE.search(window)
        inner = window[:close.start()] if close else window[:200]
        text = " ".join(html.unescape(_TAG.sub(" ", inner)).split())
        target = html.unescape(next(g for g in href.groups() if g is not None)).strip()
        found.append((header_safe(text, 300), header_safe(target, 500)))
    return tuple(found)


def host_of(url: str) -> str:
    """The host of an http(s) URL, lower case, decoded; '' for other schemes and junk."""
    url = url.strip()
    if url.startswith("//"):
        url = "http:" + url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https"):
        return ""
    return to_unicode(host)


def site(host: str) -> str:
    """The registered name of `host`: its last two labels, or three under a second-level
    label of a two-letter country ("sxd.tayninh.gov.vn" -> "tayninh.gov.vn")."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


@dataclass(frozen=True)
class Mismatch:
    """A link showing `shown` and leading to `target`."""

    shown: str
    target: str


def mismatches(found: Iterable[tuple[str, str]]) -> tuple[Mismatch, ...]:
    """The links whose visible text names a host of another site than the one they lead to.
    Text that names no host ("Bấm vào đây") is no mismatch, nor is a link within one site."""
    result: list[Mismatch] = []
    for text, href in found:
        target = host_of(href)
        shown_match = _HOST_IN_TEXT.search(text[:MAX_TAG]) if target else None
        if shown_match is None or "@" in text:
            continue
        shown = to_unicode(shown_match.group(1).rstrip("."))
        if shown.rpartition(".")[2] in _FILE_ENDINGS:
            continue
        if site(shown) != site(target) and not _within(shown, target) and not _within(
                target, shown):
            result.append(Mismatch(shown, target))
    return tuple(dict.fromkeys(result))
