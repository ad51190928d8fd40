"""Document headers written by hand in shapes the generated set does not make (other bodies,
a two-column layout with spaces, a Party directive of the Central Committee): a check from
outside the generator, whose own figures can only say how well it is fitted."""

from __future__ import annotations

import pytest

from daemon.understand.extract import from_text

CASES = [
    ("BỘ TÀI CHÍNH\nCỤC THUẾ\n\nSố: 1234/CT-TTHT\nV/v hướng dẫn chính sách thuế\n"
     "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc\n"
     "Hà Nội, ngày 12 tháng 8 năm 2026\n\nKính gửi: Cục Thuế các tỉnh",
     ("Cục Thuế", "1234", "CT-TTHT", "Công văn", "Hà Nội", "2026-08-12",
      "hướng dẫn chính sách thuế")),
    ("UBND HUYỆN CHÂU THÀNH          CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\n"
     "PHÒNG TÀI CHÍNH - KẾ HOẠCH          Độc lập - Tự do - Hạnh phúc\n\n"
     "Số: 45/TCKH                    Châu Thành, ngày 3 tháng 2 năm 2025\n"
     "V/v quyết toán ngân sách\nnăm 2024\n\nKính gửi: Sở Tài chính",
     ("Phòng Tài chính - Kế hoạch huyện Châu Thành", "45", "TCKH", "Công văn", "Châu Thành",
      "2025-02-03", "quyết toán ngân sách năm 2024")),
    ("SỞ Y TẾ TỈNH ĐỒNG NAI\nBỆNH VIỆN ĐA KHOA ĐỒNG NAI\n\nSố: 88/BV-KHTH\n"
     "V/v đề nghị hỗ trợ\nĐồng Nai, ngày 01 tháng 10 năm 2026",
     ("Bệnh viện Đa khoa Đồng Nai", "88", "BV-KHTH", "Công văn", "Đồng Nai", "2026-10-01",
      "đề nghị hỗ trợ")),
    ("HỘI ĐỒNG NHÂN DÂN\nTỈNH KHÁNH HÒA\nSố: 12/NQ-HĐND\nKhánh Hòa, ngày 10 tháng 7 năm 2026\n"
     "NGHỊ QUYẾT\nVề việc phê duyệt kế hoạch đầu tư công\ntrung hạn giai đoạn 2026 - 2030\n"
     "HỘI ĐỒNG NHÂN DÂN TỈNH KHÁNH HÒA",
     ("Hội đồng nhân dân tỉnh Khánh Hòa", "12", "NQ-HĐND", "Nghị quyết", "Khánh Hòa",
      "2026-07-10", "Về việc phê duyệt kế hoạch đầu tư công trung hạn giai đoạn 2026 - 2030")),
    ("VIỆN KIỂM SÁT NHÂN DÂN\nTỈNH LÂM ĐỒNG\nSố: 301/VKS-P1\n"
     "Lâm Đồng, ngày 9 tháng 9 năm 2026\nV/v cung cấp tài liệu",
     ("Viện kiểm sát nhân dân tỉnh Lâm Đồng", "301", "VKS-P1", "Công văn", "Lâm Đồng",
      "2026-09-09", "cung cấp tài liệu")),
    ("BỘ GIÁO DỤC VÀ ĐÀO TẠO\nSố: 5512/BGDĐT-GDTrH\n"
     "V/v triển khai xây dựng kế hoạch giáo dục\nHà Nội, ngày 18 tháng 12 năm 2026",
     ("Bộ Giáo dục và Đào tạo", "5512", "BGDĐT-GDTrH", "Công văn", "Hà Nội", "2026-12-18",
      "triển khai xây dựng kế hoạch giáo dục")),
    ("ỦY BAN NHÂN DÂN\nXÃ TÂN HỘI\nSố: 15/TB-UBND\nTân Hội, ngày 5 tháng 11 năm 2026\n"
     "THÔNG BÁO\nVề việc tổ chức lễ hội\nKính gửi: các ấp",
     ("Ủy ban nhân dân xã Tân Hội", "15", "TB-UBND", "Thông báo", "Tân Hội", "2026-11-05",
      "Về việc tổ chức lễ hội")),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_headers_from_outside_the_generator(text: str, expected: tuple[str, ...]) -> None:
    doc = from_text(text, "x.pdf")
    assert doc is not None
    assert (doc.issuer, doc.number, doc.symbol, doc.type, doc.place, str(doc.date),
            doc.summary) == expected
