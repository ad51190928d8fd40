"""The receipt slip drawn with the form's faces cut down to the common characters looks exactly
as with the full faces (same pixels, same text); a slip with any other character is drawn
with the full faces; the cut faces are made once, and again when the fonts change on disk or
their directory is gone. The letters' templates are compiled once per rules directory, and an
agency's template added, edited or removed is seen at the next slip."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pypdfium2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.office import receipt
from daemon.office.receipt import ReducedFaces
from tests.test_receipt_form import sample

_VIETNAMESE = "ăâđêôơưáàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
_NAMES = st.text(st.sampled_from(list(_VIETNAMESE + _VIETNAMESE.upper()
                                      + "abcdeghiklmnopqrstuvxy ĐBTN\"'&<>…–—“”№→•")),
                 min_size=1, max_size=60)


FACES = ReducedFaces(after=0)  # cut at the first slip


def pages(pdf: bytes) -> list[tuple[bytes, str]]:
    """Each page as pdfium draws it (pixels) and reads it (text)."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [(page.render(scale=1).to_pil().tobytes(), page.get_textpage().get_text_range())
                for page in document]
    finally:
        document.close()


def full_and_reduced(name: str, faces: ReducedFaces) -> tuple[bytes, bytes]:
    markup = receipt.render(sample(applicant=name, address=name))[1]
    return receipt.html_pdf(markup, reduced=None), receipt.html_pdf(markup, reduced=faces)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_NAMES)
def test_reduced_faces_draw_the_same_slip(name: str) -> None:
    """Vietnamese names with quotes, markup characters, dashes, arrows and the numero sign:
    the slip's pages have the same pixels and the same text with the reduced faces."""
    full, reduced = full_and_reduced(name, FACES)
    assert pages(reduced) == pages(full)


def test_a_character_beyond_the_common_ones_uses_the_full_faces(tmp_path: Path) -> None:
    """Cyrillic, Greek and a CJK character (which DejaVu lacks) in a name: the slip is the one
    the full faces draw, the reduced faces are not even made."""
    faces = ReducedFaces(after=0)
    for name in ("Иван Петров", "Ωmega Nguyễn", "Lý 李"):
        full, chosen = full_and_reduced(name, faces)
        assert pages(chosen) == pages(full)
    assert not faces._made
    assert "Иван Петров" in pages(full_and_reduced("Иван Петров", faces)[1])[0][1]


def _fonts(tmp_path: Path) -> Path:
    """A copy of the faces the form uses."""
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    for face in receipt._face_paths(receipt.FONT_DIR).values():
        shutil.copy(face, fonts / face.name)
    return fonts


def test_reduced_faces_are_made_once_and_again_when_the_fonts_change(tmp_path: Path) -> None:
    """The same directory while the fonts stay; a new one when a face on disk changes (a
    font package upgraded) or when the temporary directory was removed (a /tmp cleaner)."""
    fonts = _fonts(tmp_path)
    faces = ReducedFaces(after=0)
    first = faces.directory(fonts)
    assert first is not None and faces.directory(fonts) == first
    names = {p.name for p in receipt._face_paths(fonts).values()}
    assert {p.name for p in first.iterdir()} == names
    assert all((first / n).stat().st_size < (fonts / n).stat().st_size for n in names)

    face = fonts / sorted(names)[0]
    stat = face.stat()
    os.utime(face, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = faces.directory(fonts)
    assert second is not None and second != first

    shutil.rmtree(second)
    third = faces.directory(fonts)
    assert third is not None and third.exists() and faces.directory(fonts) == third


def test_faces_that_cannot_be_cut_leave_the_full_ones(tmp_path: Path) -> None:
    """A face that is not a font (a broken package): no reduced directory, the slip is drawn
    as before or fails as before; a missing font directory gives none either."""
    fonts = _fonts(tmp_path)
    (fonts / receipt._face_paths(fonts)["I"].name).write_bytes(b"not a font")
    faces = ReducedFaces(after=0)
    assert faces.directory(fonts) is None
    assert faces.directory(tmp_path / "nowhere") is None


def test_only_a_process_drawing_several_slips_cuts_the_faces(tmp_path: Path) -> None:
    """A command drawing one or two slips never cuts the faces; the third slip does, and the
    slips after it use the same."""
    fonts = _fonts(tmp_path)
    faces = ReducedFaces()
    assert faces.directory(fonts) is None and faces.directory(fonts) is None
    third = faces.directory(fonts)
    assert third is not None and faces.directory(fonts) == third


def _bump(path: Path) -> None:
    """A later modification time, as an edit a second later gives."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_templates_compiled_once_and_an_agency_edit_seen_at_the_next_slip(
        tmp_path: Path) -> None:
    """One environment per rules directory while nothing changes; an agency's template added,
    edited in place or removed is what the next slip uses; another rules directory (a
    configuration changed) has its own."""
    rules = tmp_path / "rules"
    rules.mkdir()
    fields = sample()
    shipped = receipt.render(fields, rules)
    assert receipt.templates(rules) is receipt.templates(rules)

    folder = rules / "templates"
    folder.mkdir()
    (folder / "receipt.txt.j2").write_text("Giấy {{ code }}\n", encoding="utf-8")
    assert receipt.render(fields, rules)[0] == f"Giấy {fields.code}\n"

    (folder / "receipt.txt.j2").write_text("Phiếu {{ code }}\n", encoding="utf-8")
    _bump(folder / "receipt.txt.j2")
    assert receipt.render(fields, rules)[0] == f"Phiếu {fields.code}\n"

    (folder / "receipt.txt.j2").unlink()
    _bump(folder)
    assert receipt.render(fields, rules) == shipped

    other = tmp_path / "other"
    (other / "templates").mkdir(parents=True)
    (other / "templates" / "receipt.txt.j2").write_text("Khác {{ code }}\n", encoding="utf-8")
    assert receipt.templates(other) is not receipt.templates(rules)
    assert receipt.render(fields, other)[0] == f"Khác {fields.code}\n"
    assert receipt.render(fields, rules) == shipped


def test_faces_left_by_a_process_that_is_gone_are_swept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker terminated by its pool runs no exit handler: the next process that cuts faces
    removes what a dead process left (the folder's name holds its id), and nothing else."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f"vanthu-fonts-{gone.pid}-x1"
    alive = tmp_path / f"vanthu-fonts-{os.getpid()}-x2"
    other = tmp_path / "vanthu-fonts-not-a-pid"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "face.ttf").write_bytes(b"x")
    receipt._sweep()
    assert not dead.exists()
    assert alive.exists() and other.exists()


def _faces_in_worker(_item: int, _limits: object) -> tuple[int, str | None]:
    made = receipt.REDUCED.directory(receipt.FONT_DIR)
    return os.getpid(), str(made) if made is not None else None


def test_the_daemons_workers_find_the_faces_cut_by_their_fork_server() -> None:
    """Real read pool (forkserver): each worker's first slip already has the cut faces, the
    same folder for all of them, cut neither by a worker nor by the daemon's own process."""
    from daemon.config import LimitsConfig
    from daemon.intake.workers import ReadPool

    pool = ReadPool(LimitsConfig(workers=2))
    try:
        results = pool.collect(pool.submit(list(range(8)), work=_faces_in_worker))
    finally:
        pool.close()
    folders = {folder for _, folder in results}
    assert len(folders) == 1 and None not in folders, folders
    folder = Path(str(folders.pop()))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in receipt._face_paths(receipt.FONT_DIR).values())
    cutter = int(folder.name[len("vanthu-fonts-"):].split("-", 1)[0])
    assert cutter != os.getpid() and cutter not in {pid for pid, _ in results}
