"""Vietnamese in every name field works everywhere: the agency's identity in config.toml and the
names in the rules either give a clear problem with its line, or every email vanthu sends is
composed and reads back with exactly that identity. And the careless admin's mistakes, each a
clear error at the right line."""

from __future__ import annotations

import email.header
import email.utils
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import config, selfcheck
from daemon.config import normal_name
from daemon.routing.rules import RuleSet
from tests.conftest import RULES

_VOWELS = "aàáảãạăằắẳẵặâầấẩẫậeèéẻẽẹêềếểễệiìíỉĩịoòóỏõọôồốổỗộơờớởỡợuùúủũụưừứửữựyỳýỷỹỵ"
LETTERS = _VOWELS + _VOWELS.upper() + "bcdđghklmnpqrstvxBCDĐGHKLMNPQRSTVX"
# What agencies and people put in names: spaces, quotes, commas, '@', angle brackets,
# backslashes, slashes, brackets, dashes.
PUNCTUATION = " ,.-\"'@<>\\()/&:;–«»"
EMOJI = "🏛📄✉😀\ufe0f"

FROM_ADDRESS = "vanthu.sxd@tayninh.gov.vn"


def _names(alphabet: str, max_size: int = 200) -> st.SearchStrategy[str]:
    """Text of `alphabet` that has at least one letter, up to very long."""
    return st.builds(lambda head, tail: head + tail, st.sampled_from(LETTERS),
                     st.text(alphabet, max_size=max_size))


REALISTIC = _names(LETTERS + PUNCTUATION + "0123456789")
WITH_EMOJI = _names(LETTERS + PUNCTUATION + EMOJI)
# Anything a file can hold: every code point but surrogates (not encodable as UTF-8).
HOSTILE = st.text(st.characters(exclude_categories=["Cs"]), max_size=120)


def toml_string(value: str) -> str:
    """`value` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def quoted(name: str) -> str:
    """`name` as an RFC 5322 quoted-string, the way an admin should write a display name."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(agency: str, sender: str, rules: Path = RULES) -> str:
    return f"""\
[agency]
name = {toml_string(agency)}
code = "000.00.22.H56"
message_id_domain = "sxd.tayninh.gov.vn"

[[mailboxes]]
name = "vanthu"
host = "imap.tayninh.gov.vn"
username = "vanthu"
password = "x"

[smtp]
host = "smtp.tayninh.gov.vn"
from = {toml_string(sender)}

[rules]
dir = {toml_string(str(rules))}

[security]
authserv_id = "mx1.tayninh.gov.vn"
"""


def shown_name(raw_from: str) -> str:
    """The display name of a raw From header as an RFC 2047 mail client decodes it."""
    unfolded = raw_from.replace("\r\n ", " ").replace("\n ", " ")
    [(name, _)] = email.utils.getaddresses([unfolded])
    return str(email.header.make_header(email.header.decode_header(name)))


def assert_every_email_reads_back(cfg: config.Config, rules: RuleSet) -> None:
    """Every email parses back without a defect, From our address, showing the configured
    name."""
    want = cfg.smtp.from_name or cfg.agency.name
    sent = selfcheck.emails(cfg, rules)
    assert len(sent) == 11
    for label, raw in sent:
        parsed = message_from_bytes(raw, policy=policy.default)
        for part in parsed.walk():
            assert not part.defects, (label, part.defects)
        for name, value in parsed.items():
            assert not getattr(value, "defects", ()), (label, name, value.defects)
        assert [a.addr_spec for a in parsed["From"].addresses] == [cfg.smtp.from_address], label
        raw_from = next(v for k, v in parsed.raw_items() if k == "From")
        assert shown_name(raw_from) == want, label


def assert_clear(problems: tuple[object, ...], files: set[str]) -> None:
    """Each problem names one of `files` and a line."""
    for problem in problems:
        assert getattr(problem, "file", None) in files and getattr(problem, "line", None), \
            problem


@settings(max_examples=15, deadline=None)
@given(agency=REALISTIC, display=WITH_EMOJI, with_name=st.booleans())
def test_a_vietnamese_identity_is_carried_by_every_email(agency: str, display: str,
                                                         with_name: bool) -> None:
    """Any Vietnamese agency name and `[smtp] from` display name written as it should be
    (quotes, commas, '@', '<>', backslashes, emoji, very long) passes the self-check, and
    every email shows exactly that name and address."""
    sender = f"{quoted(display)} <{FROM_ADDRESS}>" if with_name else FROM_ADDRESS
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(config_text(agency, sender), encoding="utf-8")

        report = selfcheck.check(path)

        assert report.problems == (), report.problems
        assert report.config is not None and report.rules is not None
        assert report.config.agency.name == normal_name(agency)
        assert report.config.smtp.from_name == (normal_name(display) if with_name else "")
        assert_every_email_reads_back(report.config, report.rules)


@settings(max_examples=15, deadline=None)
@given(agency=HOSTILE, display=HOSTILE)
def test_any_identity_is_either_refused_with_a_line_or_sent_as_configured(
        agency: str, display: str) -> None:
    """Whatever an admin types as agency name and `[smtp] from` (control characters, line
    breaks, unbalanced quotes, two addresses), check either names the key's line, or every
    email is sent with exactly the identity the config understood."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(config_text(agency, f"{display} <{FROM_ADDRESS}>"), encoding="utf-8")

        report = selfcheck.check(path)

        if report.problems:
            assert_clear(report.problems, {str(path)})
            return
        assert report.config is not None and report.rules is not None
        assert_every_email_reads_back(report.config, report.rules)


def _rules_with(folder: Path, people: list[str], department: str, procedure: str) -> Path:
    """The shipped rules, with people, a department and a procedure renamed."""
    target = folder / "rules"
    shutil.copytree(RULES, target)
    data = yaml.safe_load((target / "people.yaml").read_text(encoding="utf-8"))
    for person, name in zip(data["people"], people, strict=False):
        person["name"] = name
    data["departments"][0]["name"] = department
    (target / "people.yaml").write_text(yaml.safe_dump(data, allow_unicode=True),
                                        encoding="utf-8")
    catalogue = yaml.safe_load((target / "procedures.yaml").read_text(encoding="utf-8"))
    catalogue["procedures"][0]["name"] = procedure
    (target / "procedures.yaml").write_text(yaml.safe_dump(catalogue, allow_unicode=True),
                                            encoding="utf-8")
    return target


@settings(max_examples=15, deadline=None)
@given(people=st.lists(WITH_EMOJI, min_size=2, max_size=6), department=WITH_EMOJI,
       procedure=REALISTIC)
def test_vietnamese_names_in_the_rules_pass_and_are_kept(people: list[str], department: str,
                                                         procedure: str) -> None:
    """People, department and procedure names with diacritics, quotes, commas, '@', '<>',
    backslashes (and emoji where no PDF prints them) pass the self-check and are kept as NFC
    with single spaces."""
    with tempfile.TemporaryDirectory() as folder:
        rules = _rules_with(Path(folder), people, department, procedure)
        path = Path(folder) / "config.toml"
        path.write_text(config_text("Sở Xây dựng tỉnh Tây Ninh", FROM_ADDRESS, rules),
                        encoding="utf-8")

        report = selfcheck.check(path)

        assert report.problems == (), report.problems
        assert report.config is not None and report.rules is not None
        names = [p.name for p in report.rules.people.values()]
        assert names[:len(people)] == [normal_name(n) for n in people]
        assert report.rules.departments["qlxd"].name == normal_name(department)
        assert report.rules.procedures[0].name == normal_name(procedure)
        assert_every_email_reads_back(report.config, report.rules)


@settings(max_examples=15, deadline=None)
@given(person=HOSTILE, procedure=HOSTILE)
def test_any_name_in_the_rules_is_either_refused_with_a_line_or_works(person: str,
                                                                      procedure: str) -> None:
    """Whatever is typed as a person's or a procedure's name, check either reports it at its
    line in the rule files, or every email composes and reads back."""
    with tempfile.TemporaryDirectory() as folder:
        rules = _rules_with(Path(folder), [person], "Phòng Quản lý xây dựng", procedure)
        path = Path(folder) / "config.toml"
        path.write_text(config_text("Sở Xây dựng tỉnh Tây Ninh", FROM_ADDRESS, rules),
                        encoding="utf-8")

        report = selfcheck.check(path)

        if report.problems:
            assert_clear(report.problems, {str(rules / "people.yaml"),
                                           str(rules / "procedures.yaml")})
            return
        assert report.config is not None and report.rules is not None
        assert report.rules.people["nguyen_van_an"].name == normal_name(person)
        assert_every_email_reads_back(report.config, report.rules)


# --- The careless admin ----------------------------------------------------------------------

BASE = config_text("Sở Xây dựng tỉnh Tây Ninh", f"Văn thư <{FROM_ADDRESS}>")


def _swap(old: str, new: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)
    return mutate


CARELESS: list[tuple[str, Callable[[str], str], str | None, str]] = [
    ("unknown key", _swap('host = "smtp', 'helo = "vanthu"\nhost = "smtp'), "helo =",
     "smtp.helo: unknown key"),
    ("misspelt section", _swap("[security]", "[securty]"), "[securty]",
     "securty: unknown key"),
    ("wrong type", _swap('username = "vanthu"', 'username = "vanthu"\nport = "993"'),
     'port = "993"', "mailboxes[0].port: expected int, got str"),
    ("wrong type in a list", _swap('authserv_id = "mx1.tayninh.gov.vn"',
                                   'trusted_domains = ["gov.vn", 5]'), '"gov.vn", 5',
     "security.trusted_domains[1]: expected a string, got int"),
    ("missing section", _swap('[smtp]\nhost = "smtp.tayninh.gov.vn"\nfrom = "Văn thư '
                              f'<{FROM_ADDRESS}>"\n', ""), None, "smtp: missing"),
    ("missing key", _swap('name = "Sở Xây dựng tỉnh Tây Ninh"\n', ""), "[agency]",
     "agency.name: missing"),
    ("missing mailbox key", _swap('host = "imap.tayninh.gov.vn"\n', ""), "[[mailboxes]]",
     "mailboxes[0].host: missing"),
    ("duplicate mailbox", _swap("[smtp]", '[[mailboxes]]\nname = "vanthu"\nhost = "h"\n'
                                          'username = "u"\npassword = "p"\n\n[smtp]'),
     'name = "vanthu"\nhost = "h"', "mailboxes[1].name: two mailboxes are named 'vanthu'"),
    ("two senders", _swap(f'from = "Văn thư <{FROM_ADDRESS}>"',
                          'from = "vanthu@sxd.gov.vn, vanphong@sxd.gov.vn"'), "from =",
     "smtp.from: must be exactly one mailbox, found 2"),
    ("a display name with a comma, unquoted", _swap(
        f'from = "Văn thư <{FROM_ADDRESS}>"', f'from = "Văn thư, Sở Xây dựng <{FROM_ADDRESS}>"'),
     "from =", "smtp.from: must be exactly one mailbox: quote a display name"),
    ("non-ASCII sender", _swap(f'from = "Văn thư <{FROM_ADDRESS}>"',
                               'from = "Văn thư <văn.thư@sxd.gov.vn>"'), "from =",
     "smtp.from: the address must be ASCII"),
    ("CR LF in a value", _swap('host = "imap.tayninh.gov.vn"',
                               'host = "imap.tayninh.gov.vn\\r\\nX-Evil: 1"'), 'host = "imap',
     "mailboxes[0].host: must be one line"),
    ("a multi-line name", _swap('name = "Sở Xây dựng tỉnh Tây Ninh"',
                                'name = """Sở Xây dựng\ntỉnh Tây Ninh"""'), 'name = """',
     "agency.name: must be one line"),
    ("a key written twice", _swap('code = "000.00.22.H56"',
                                  'code = "000.00.22.H56"\ncode = "000.00.22.H57"'),
     'code = "000.00.22.H57"', "not valid TOML: Cannot overwrite a value"),
    ("a date as written in Vietnam", _swap("[security]",
                                           '[calendar]\ndays_off = ["31/12/2026"]\n[security]'),
     "days_off", "calendar.days_off[0]: '31/12/2026' is not a date (YYYY-MM-DD)"),
    ("a digest time without its zero", _swap("[security]",
                                             '[digest]\ntimes = ["6:00"]\n[security]'),
     "times =", "digest.times[0]: '6:00' is not HH:MM"),
    ("an authserv-id with the results", _swap('authserv_id = "mx1.tayninh.gov.vn"',
                                              'authserv_id = "mx1.tayninh.gov.vn; dkim=pass"'),
     "authserv_id", "security.authserv_id: must be one word"),
]


@pytest.mark.parametrize(("mutate", "marker", "message"),
                         [case[1:] for case in CARELESS], ids=[case[0] for case in CARELESS])
def test_a_careless_edit_is_one_clear_error_at_its_line(
        tmp_path: Path, mutate: Callable[[str], str], marker: str | None,
        message: str) -> None:
    """Each typical mistake of an admin editing config.toml is exactly one error, with the
    key's path and the line where it is (or where it is missing from)."""
    text = mutate(BASE)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    line = text[:text.index(marker)].count("\n") + 1 if marker else None

    problems = selfcheck.check(path).problems

    assert len(problems) == 1, problems
    assert problems[0].file == str(path) and problems[0].line == line, problems
    assert message in problems[0].message, problems


def test_the_base_of_the_careless_cases_is_valid(tmp_path: Path) -> None:
    """The config every careless case starts from passes the whole check."""
    path = tmp_path / "config.toml"
    path.write_text(BASE, encoding="utf-8")

    assert selfcheck.check(path).problems == ()


def test_names_are_compared_as_written_in_nfc() -> None:
    """A display name typed decomposed is configured in NFC (what every email carries)."""
    decomposed = unicodedata.normalize("NFD", "Văn thư")

    parsed = config.mailbox(f'"{decomposed}" <{FROM_ADDRESS}>')

    assert parsed == ("Văn thư", FROM_ADDRESS)
