"""The volume (Quyển số) of the registers is one setting, `[agency] volume`: the registers'
cover and the receipt slip's tracking-book entry follow it (the slip printed "01/<year>"
whatever the book was)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from daemon import config
from daemon.errors import ConfigError
from daemon.models import Action, Applicant, Kind, Understanding
from daemon.outbound import compose
from daemon.understand.parse import parse
from tests.conftest import CORPUS
from tests.desk import Desk
from tests.test_receipt_form import AGENCY, html_text, parts, pdf_text
from tests.test_registers_export import YEAR, _export, _pages, office  # noqa: F401 (fixture)


def _slip(tmp_path: Path, volume: int) -> tuple[str, str, str]:
    cfg = dataclasses.replace(Desk(tmp_path).cfg,
                              agency=dataclasses.replace(AGENCY, volume=volume))
    mail = parse((CORPUS / "017.eml").read_bytes(), cfg.limits)
    und = Understanding(Kind.DOSSIER, "", None, None,
                        Applicant("Lê Thị Ánh Tuyết", "tuyet@gmail.com", None))
    ctx = compose.Context(sha256="0" * 64, received_at=datetime(2026, 11, 26, 2, tzinfo=UTC),
                          case_code="000.00.22.H56-261126-0004", number=12, year=2026,
                          appointment=date(2026, 12, 24))
    text, markup, pdf, _ = parts(compose.acknowledge(
        cfg, ctx, Action("acknowledge", ("tuyet@gmail.com",)), mail, und).as_bytes())
    return " ".join(text.split()), html_text(markup), pdf_text(pdf)


def test_the_slip_follows_the_volume(tmp_path: Path) -> None:
    """One slip (a PDF costs seconds): text, HTML and PDF say the book's volume, two digits."""
    for where in _slip(tmp_path, 7):
        assert "Quyển số: 07/2026, Số thứ tự: 12" in where


def test_the_cover_follows_the_volume_unless_given(office: Path) -> None:  # noqa: F811
    office.write_text(office.read_text(encoding="utf-8").replace(
        "[agency]\n", "[agency]\nvolume = 3\n", 1), encoding="utf-8")
    assert "Quyển số: 3" in _pages(_export(office, "incoming", "pdf"))[0]
    assert "Quyển số: 5" in _pages(_export(office, "incoming", "pdf", YEAR, "--volume",
                                           "5"))[0]


@pytest.mark.parametrize("careless", [0, -1, 100, "02", "hai", True, 2.5])
def test_a_careless_volume_is_one_clear_line(tmp_path: Path, careless: object) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse({"agency": {"volume": careless}}, file="t", text="", base=tmp_path)
    [line] = [x for x in str(caught.value).splitlines() if "agency.volume" in x]
    assert re.search(r"agency\.volume: (must be a number from 1 to 99|expected int)", line)


def test_the_example_configuration_documents_the_volume() -> None:
    example = (Path(__file__).parent.parent / "config.example.toml").read_text(encoding="utf-8")
    assert re.search(r"^volume = 1$", example, re.M)
    parsed = config.parse({"agency": {"volume": 2}}, file="t", text="", base=Path("."))
    assert parsed.agency.volume == 2
