"""Benchmark of reading scanned documents: generated Decree-30 first pages printed, "scanned"
and read back through vanthu's reading of a mail.

    uv run python -m tests.bench_ocr [--count N] [--seed S] [--dirty]

Each page is drawn by the generated set's own PDF maker (tests/generated/make.py), rendered
to an image at 200 dpi, then spoiled as a scanner and a clerk spoil it: a small skew, grain,
a red seal over the signature, a slight blur and JPEG artefacts (`--dirty`: stronger skew,
noise and compression). The image is wrapped as a scanned PDF (one JPEG per page, no text
layer) and attached to a mail, which `daemon.understand.read` reads as the worker does. The
report gives, per field, the share read right (against the generator's labels) and the
seconds per page.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import time
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pypdfium2
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from daemon.config import LimitsConfig
from daemon.models import Document
from daemon.understand import read
from tests.generated.make import Gen, Page, pdf_of_page

SERIF = "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"
FIELDS = Document.FIELDS


@dataclass(frozen=True)
class Spoil:
    """How badly a page is scanned."""

    skew: float = 1.0  # degrees, either way
    noise: float = 12.0  # grain: the spread of grey added to each pixel
    quality: int = 70  # JPEG quality
    seal: bool = True
    blur: float = 0.5


CLEAN = Spoil()
DIRTY = Spoil(skew=2.5, noise=30.0, quality=40, blur=0.8)


def seal(image: Image.Image, rnd: random.Random) -> None:
    """A red round seal pressed over the signature block (lower right of the text)."""
    width, height = image.size
    radius = int(width * 0.09)
    cx = int(width * rnd.uniform(0.62, 0.72))
    cy = int(height * rnd.uniform(0.36, 0.42))
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    red = (200, 20, 30, 170)
    for ring in (radius, int(radius * 0.93), int(radius * 0.55)):
        draw.ellipse((cx - ring, cy - ring, cx + ring, cy + ring), outline=red,
                     width=max(3, radius // 25))
    font = ImageFont.truetype(SERIF, max(10, radius // 6))
    text = "ỦY BAN NHÂN DÂN"
    for i, letter in enumerate(text):
        angle = math.pi * (1.1 + 0.8 * i / max(1, len(text) - 1))
        x = cx + int(radius * 0.74 * math.cos(angle))
        y = cy + int(radius * 0.74 * math.sin(angle))
        draw.text((x, y), letter, fill=red, font=font, anchor="mm")
    draw.regular_polygon((cx, cy, radius // 4), 5, fill=red)
    image.paste(layer, (0, 0), layer)


def scanned(pdf: bytes, rnd: random.Random, spoil: Spoil = CLEAN, dpi: int = 200) -> bytes:
    """The first page of `pdf` as a scanner returns it: a PDF holding one JPEG, no text."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[0].render(scale=dpi / 72).to_pil().convert("RGB")
    finally:
        document.close()
    if spoil.seal:
        seal(image, rnd)
    image = image.rotate(rnd.uniform(-spoil.skew, spoil.skew), resample=Image.Resampling.BICUBIC,
                         expand=False, fillcolor=(255, 255, 255))
    grain = Image.effect_noise(image.size, spoil.noise).convert("RGB")
    image = Image.blend(image, grain, 0.12) if spoil.noise else image
    image = image.filter(ImageFilter.GaussianBlur(spoil.blur))
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=spoil.quality)
    out = FPDF(format="A4")
    out.add_page()
    out.image(io.BytesIO(jpeg.getvalue()), x=0, y=0, w=210, h=297)
    return bytes(out.output())


def page_and_label(gen: Gen) -> tuple[Page, dict[str, Any]]:
    """One generated official document's page and its labels."""
    traps: list[str] = []
    return gen.document_text(gen.issuer(gen.rnd.random() < 0.25), traps)


def mail_with(pdf: bytes, name: str = "van-ban-scan.pdf", authserv: str = "") -> bytes:
    """A mail from a provincial department carrying the scan; with `authserv`, the receiving
    server's verdict that the sender's domain passed DMARC."""
    msg = EmailMessage(policy=SMTP)
    if authserv:
        msg["Authentication-Results"] = (f"{authserv}; dkim=pass header.d=stc.tayninh.gov.vn; "
                                         "dmarc=pass header.from=stc.tayninh.gov.vn")
    msg["From"] = "vanthu@stc.tayninh.gov.vn"
    msg["To"] = "vanthu.sxd@tayninh.gov.vn"
    msg["Subject"] = "Gửi văn bản"
    msg["Date"] = "Tue, 10 Nov 2026 09:00:00 +0700"
    msg["Message-ID"] = "<scan@stc.tayninh.gov.vn>"
    msg.set_content("Kính gửi Quý cơ quan, xin gửi văn bản (bản quét) kèm theo.")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
    return msg.as_bytes()


def value(document: Document | None, name: str) -> str | None:
    found = getattr(document, name) if document is not None else None
    return found.isoformat() if isinstance(found, date) else found


def expected(label: dict[str, Any], name: str) -> str | None:
    return label[name]  # type: ignore[no-any-return]


def run(count: int, seed: int, spoil: Spoil) -> dict[str, Any]:
    gen = Gen(random.Random(seed))
    rnd = random.Random(seed + 1)
    right = dict.fromkeys(FIELDS, 0)
    seconds = 0.0
    misses: list[str] = []
    for _ in range(count):
        page, label = page_and_label(gen)
        pdf = scanned(pdf_of_page(page), rnd, spoil)
        began = time.monotonic()
        reading = read(mail_with(pdf), LimitsConfig())
        seconds += time.monotonic() - began
        document = reading.document
        for name in FIELDS:
            if value(document, name) == expected(label, name):
                right[name] += 1
            else:
                misses.append(f"{name}: {value(document, name)!r} != {label[name]!r}")
    return {"count": count, "accuracy": {n: right[n] / count for n in FIELDS},
            "seconds_per_page": seconds / count, "misses": misses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dirty", action="store_true")
    parser.add_argument("--misses", action="store_true", help="print each field read wrong")
    args = parser.parse_args()
    result = run(args.count, args.seed, DIRTY if args.dirty else CLEAN)
    print(f"{result['count']} scanned pages ({'dirty' if args.dirty else 'clean-ish'}), "
          f"{result['seconds_per_page']:.2f} s per page")
    for name, share in result["accuracy"].items():
        print(f"  {name:<16} {share:6.1%}")
    if args.misses:
        for miss in result["misses"]:
            print("  miss", miss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
