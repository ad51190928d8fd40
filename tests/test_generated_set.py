"""The generated evaluation set: deterministic for a seed, every label well-formed."""

from __future__ import annotations

import email
import email.policy
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.generated.make import generate

KINDS = {"document", "dossier", "reply", "auto", "bounce", "bulk", "spam", "other"}
FIELDS = {"number", "symbol", "type", "issuer", "place", "date", "summary", "urgency",
          "confidentiality"}
URGENCY = {None, "Hỏa tốc", "Thượng khẩn", "Khẩn"}
SECRECY = {None, "Mật", "Tối mật", "Tuyệt mật"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first, second = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    generate(first, count=60, seed=7)
    generate(second, count=60, seed=7)
    return first, second


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_same_seed_gives_same_bytes(two_runs: tuple[Path, Path]) -> None:
    """Two runs with one seed write the same files, byte for byte."""
    first, second = two_runs

    names = sorted(p.name for p in first.iterdir())

    assert names == sorted(p.name for p in second.iterdir())
    assert len([n for n in names if n.endswith(".eml")]) == 60
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_other_seed_gives_other_mail(tmp_path: Path) -> None:
    """Another seed gives another set."""
    generate(tmp_path, count=5, seed=8)

    other = (tmp_path / "0001.eml").read_bytes()

    generate(tmp_path, count=5, seed=7)
    assert (tmp_path / "0001.eml").read_bytes() != other


def test_labels_are_well_formed(two_runs: tuple[Path, Path]) -> None:
    """Every label has the public corpus's shape, NFC strings, and a mail that parses."""
    folder = two_runs[0]
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    context = json.loads((folder / "context.json").read_text(encoding="utf-8"))
    refs = {c["case_ref"] for c in context["cases"]}

    for label in labels:
        where = label["file"]
        assert set(label) >= {"file", "kind", "case_ref", "document", "applicant", "must",
                              "traps", "attachments"}, where
        assert label["kind"] in KINDS, where
        assert all(s == unicodedata.normalize("NFC", s) for s in strings(label)), where
        raw = (folder / where).read_bytes()
        assert raw.isascii() or "body-8bit" in label["traps"], where
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["Message-ID"] and message["From"], where
        shown = {part.get_filename() for part in message.walk() if part.get_filename()}
        assert set(label["attachments"]) <= shown, where
        doc = label["document"]
        assert (doc is not None) == (label["kind"] == "document"), where
        if doc:
            assert set(doc) == FIELDS, where
            assert doc["type"] and doc["issuer"] and doc["place"] and doc["summary"], where
            assert doc["number"] is None or re.fullmatch(r"\d+", doc["number"]), where
            assert doc["date"] is None or re.fullmatch(r"\d{4}-\d\d-\d\d", doc["date"]), where
            assert doc["urgency"] in URGENCY and doc["confidentiality"] in SECRECY, where
            assert not doc["summary"].startswith("V/v"), where
        applicant = label["applicant"]
        assert (applicant is not None) == (label["kind"] == "dossier"), where
        if applicant:
            assert set(applicant) == {"name", "email", "phone"}, where
            assert re.fullmatch(r"0\d{9,10}", applicant["phone"]), where
            assert "@" in applicant["email"], where
        if label["kind"] == "reply":
            assert label["case_ref"] in refs, where
        else:
            assert label["case_ref"] is None, where


def test_kinds_are_all_present(two_runs: tuple[Path, Path]) -> None:
    """A small set already holds documents, dossiers, replies and spam."""
    labels = json.loads((two_runs[0] / "labels.json").read_text(encoding="utf-8"))

    kinds = {label["kind"] for label in labels}

    assert {"document", "dossier", "reply", "spam"} <= kinds
