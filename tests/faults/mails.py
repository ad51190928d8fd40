"""Distinct official documents for the fault suite: each has its own number, so each is one
register entry, one forward (Director, Deputies, Chief of Office) and one acknowledgement."""

from __future__ import annotations

ISSUERS = [("snv.tayninh.gov.vn", "SỞ NỘI VỤ", "SNV", "Trần Thị Ánh Nguyệt"),
           ("stc.tayninh.gov.vn", "SỞ TÀI CHÍNH", "STC", "Lê Văn Đức"),
           ("sgtvt.tayninh.gov.vn", "SỞ GIAO THÔNG VẬN TẢI", "SGTVT", "Nguyễn Hữu Phước")]


def document(number: int, tag: str = "fault", padding: int = 0) -> bytes:
    """Official document `number` (unique per `tag`); `padding` bytes of extra text make a
    bigger mail, so a fetch takes long enough for a fault to land in the middle of it."""
    domain, name, code, signer = ISSUERS[number % len(ISSUERS)]
    filler = ("Nội dung chi tiết kèm theo văn bản. " * (padding // 36 + 1))[:padding]
    verdict = f"mx1.tayninh.gov.vn; dkim=pass header.d={domain}; dmarc=pass header.from={domain}"
    text = f"""Authentication-Results: {verdict}
From: {name.title()} <vanthu@{domain}>
To: vanthu.sxd@tayninh.gov.vn
Subject: =?utf-8?b?VGjDtG5nIGLDoW8=?= {number}/TB-{code}
Message-ID: <{tag}-{number}@{domain}>
Date: Mon, 11 May 2026 14:20:00 +0700
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

UBND TỈNH TÂY NINH
{name}
Số: {number}/TB-{code}
Tây Ninh, ngày 11 tháng 5 năm 2026
THÔNG BÁO
Về việc tập huấn nghiệp vụ văn thư đợt {number} ({tag})
Kính gửi: Sở Xây dựng tỉnh Tây Ninh.
{filler}
Người ký: {signer}
"""
    return text.replace("\n", "\r\n").encode()


def documents(count: int, tag: str = "fault", padding: int = 0) -> list[bytes]:
    return [document(1000 + i, tag, padding) for i in range(count)]
