"""Look-alike domains, links that show one address and lead to another, and the threading
paths of a reply: a middle entry of References, an In-Reply-To with a comment or noise, a case
code in a forwarded or quoted text."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.models import Kind, Understanding
from daemon.understand import judge, quoted_text, read
from daemon.understand.classify import thread_ids
from daemon.understand.lookalike import links, lookalike, mismatches, skeleton, to_unicode
from tests.conftest import AUTHSERV_ID

TRUSTED = ("gov.vn", "tayninh.gov.vn")
CFG = config.parse({"security": {"authserv_id": AUTHSERV_ID}}, file="test", text="",
                   base=Path("."))

# ------------------------------------------------------------------ look-alike domains

_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)
_PREFIX = st.lists(_LABEL, min_size=0, max_size=3).map(".".join)
_TLD = st.sampled_from(["com", "net", "org", "co", "info", "xyz", "top", "click", "ru", "io",
                        "com.vn", "net.vn", "vn"])
# Letters of other scripts, and Vietnamese letters, that pass for the o of "gov".
_FAKE_O = st.sampled_from(["о", "ο", "ơ", "ô", "ó", "ỏ", "ọ", "0"])


def _with(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if prefix else rest


@pytest.mark.parametrize("domain", [
    "gov-vn.com", "tayninh-gov.vn", "gov.vn.example.com", "sxd.tayninh.gov.vn.co",
    "gov.vn.net", "govvn.org", "gov.com.vn", "sxd-tayninh.govvn.net", "g0v.vn",
    "gоv.vn", "xn--gv-fmc.vn", "tayninh.gοv.vn", "gơv.vn", "tâyninh.gov.vn.com",
    "dichvucong.gov.vn.login-verify.click", "mail-gov-vn.top",
    "xn--nghan-2ua.gov.vn", "nghéan.gov.vn", "sxd.tâyninh.gov.vn",
])
def test_known_lookalikes_are_flagged_with_a_reason(domain: str) -> None:
    found = lookalike(domain, TRUSTED)
    assert found is not None, domain
    assert found.target in TRUSTED
    assert "gov.vn" in found.why


@pytest.mark.parametrize("domain", [
    "gov.vn", "tayninh.gov.vn", "sxd.tayninh.gov.vn", "mail.moh.gov.vn", "gmail.com",
    "yahoo.com.vn", "vnexpress.net", "vnpt.vn", "agov.vn", "gov.uk", "state.gov",
    "tayninh.com.vn", "egov.com.vn", "", "localhost",
])
def test_ordinary_and_real_government_domains_are_not_flagged(domain: str) -> None:
    assert lookalike(domain, TRUSTED) is None


def test_punycode_is_decoded_to_what_the_reader_sees() -> None:
    assert to_unicode("xn--gv-fmc.vn") == "gоv.vn"
    assert skeleton("xn--gv-fmc.vn") == "gov.vn"
    assert skeleton("GƠV.VN") == "gov.vn"
    assert to_unicode("xn--broken--.vn") == "xn--broken--.vn"  # undecodable stays


@settings(max_examples=300, deadline=None)
@given(prefix=_PREFIX)
def test_every_real_subdomain_of_gov_vn_is_trusted(prefix: str) -> None:
    assert lookalike(_with(prefix, "gov.vn"), TRUSTED) is None
    assert lookalike(_with(prefix, "tayninh.gov.vn"), TRUSTED) is None


@settings(max_examples=300, deadline=None)
@given(prefix=_PREFIX, tld=_TLD, suffix=_PREFIX,
       shape=st.sampled_from(["hyphen", "hyphen-both", "extra", "other-tld", "run-together",
                              "inserted"]))
def test_every_lookalike_shape_of_gov_vn_is_flagged(prefix: str, tld: str, suffix: str,
                                                     shape: str) -> None:
    rest = {
        "hyphen": "gov-vn." + tld,
        "hyphen-both": "tayninh-gov.vn",
        "extra": "gov.vn." + _with(suffix, tld),
        "other-tld": "gov.vn" + "." + tld if tld != "vn" else "gov.vn.com",
        "run-together": "govvn." + tld,
        "inserted": "gov." + ("com" if tld == "vn" else tld.split(".")[0]) + ".vn",
    }[shape]
    domain = _with(prefix, rest)
    assert lookalike(domain, TRUSTED) is not None, domain


@settings(max_examples=300, deadline=None)
@given(prefix=_PREFIX, fake=_FAKE_O, punycode=st.booleans())
def test_every_homograph_of_gov_vn_is_flagged(prefix: str, fake: str, punycode: bool) -> None:
    domain = _with(prefix, f"g{fake}v.vn")
    if punycode and not domain.isascii():
        domain = idna.encode(domain, uts46=True).decode("ascii") if fake not in "оο" else \
            domain.encode("idna").decode("ascii")
    assert lookalike(domain, TRUSTED) is not None, domain


def test_a_long_hostile_domain_is_judged_at_once() -> None:
    domain = "gov-vn-" * 5000 + "x.com"
    assert lookalike(domain, TRUSTED) is not None  # the first 255 characters say enough


# ------------------------------------------------------------------ links


def test_links_are_read_with_their_visible_text() -> None:
    markup = ('<p>Xem <a class="x" href="https://evil.top/a?b=1&amp;c=2"><b>https://'
              'dichvucong.gov.vn</b></a> và <A HREF=\'/local\'>tại đây</A> <a name="x">x</a>')
    assert links(markup) == (("https://dichvucong.gov.vn", "https://evil.top/a?b=1&c=2"),
                             ("tại đây", "/local"))


def test_mismatches_are_links_to_another_site() -> None:
    found = mismatches([
        ("https://dichvucong.gov.vn", "http://evil.top/login"),  # mismatch
        ("dichvucong.gov.vn", "https://dichvucong.gov.vn/x"),  # same host
        ("tayninh.gov.vn", "https://sxd.tayninh.gov.vn/x"),  # a subdomain
        ("www.google.com", "https://google.com"),  # same site
        ("Bấm vào đây", "https://evil.top"),  # no host shown
        ("ho-so.pdf", "https://files.example.com/ho-so.pdf"),  # a file name
        ("an@gmail.com", "mailto:an@gmail.com"),
    ])
    assert [(m.shown, m.target) for m in found] == [("dichvucong.gov.vn", "evil.top")]


def test_unclosed_anchors_cost_linear_time() -> None:
    assert len(links('<a href="http://x.com">' * 20000)) == 200


# ------------------------------------------------------------------ judged mails


class Cases:
    """One case, HS-2025-000123, whose thread holds <dossier@tayninh.gov.vn>."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def case_exists(self, code: str) -> bool:
        return code == "HS-2025-000123"

    def case_of_message_id(self, message_id: str) -> str | None:
        self.asked.append(message_id)
        return "HS-2025-000123" if message_id == "<dossier@tayninh.gov.vn>" else None

    def is_our_message(self, message_id: str) -> bool:
        return False

    def case_secrecy(self, code: str) -> str | None:
        return None


def _mail(sender: str, subject: str, text: str, html: str | None = None,
          headers: str = "") -> bytes:
    head = (f"From: {sender}\r\nTo: vanthu@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <m1@example.com>\r\nDate: Mon, 3 Mar 2025 08:00:00 +0700\r\n"
            f"{headers}MIME-Version: 1.0\r\n")
    if html is None:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n" + text).encode()
    return (head + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n"
            "--b\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + html + "\r\n--b--\r\n").encode()


def _judge(raw: bytes, cases: Cases | None = None) -> Understanding:
    return judge(read(raw, CFG.limits), CFG, cases or Cases())


DOCUMENT = ("UBND TỈNH TÂY NINH\nSỞ XÂY DỰNG\nSố: 123/SXD-QLN\nTây Ninh, ngày 3 tháng 3 năm 2025"
            "\nV/v báo cáo\n")


@pytest.mark.parametrize("sender", [
    "vanthu@sxd-tayninh-gov.vn.com", "vanthu@sxd.tayninh.gov.vn.co", "vanthu@xn--gv-fmc.vn",
    "vanthu@tayninh.govvn.org",
])
def test_a_sender_imitating_gov_vn_is_phishing_and_held(sender: str) -> None:
    und = _judge(_mail(sender, "Công văn 123", DOCUMENT))
    assert und.kind is Kind.SPAM
    assert "giả gov.vn" in und.why
    assert any(r.startswith("Thư giả danh cơ quan nhà nước (lừa đảo): tên miền "
                            "người gửi giả gov.vn") for r in und.quarantine_reasons)


def test_a_reply_to_imitating_gov_vn_is_phishing() -> None:
    und = _judge(_mail("an@gmail.com", "Hỏi", "Xin hỏi.",
                       headers="Reply-To: hotro@dichvucong-gov.vn\r\n"))
    assert und.kind is Kind.SPAM
    assert und.quarantine


def test_a_real_subdomain_is_no_phishing() -> None:
    und = _judge(_mail("vanthu@sxd.tayninh.gov.vn", "Công văn 123", DOCUMENT))
    assert und.kind is Kind.DOCUMENT
    assert not any("phishing" in r for r in und.quarantine_reasons)


def test_a_link_showing_a_state_site_and_leading_elsewhere_is_phishing() -> None:
    html = ('<p>Hồ sơ của ông bà cần bổ sung, xem tại '
            '<a href="http://portal-login.top/a">https://dichvucong.gov.vn/hoso</a></p>')
    und = _judge(_mail("thongbao@mailer.example.com", "Thông báo", "Hồ sơ cần bổ sung.", html))
    assert und.kind is Kind.SPAM
    assert "dichvucong.gov.vn" in und.why and "portal-login.top" in und.why


def test_a_link_to_a_lookalike_domain_is_phishing() -> None:
    html = '<a href="https://dichvucong.gov.vn.xacminh.net/login">Đăng nhập</a>'
    und = _judge(_mail("an@gmail.com", "Thông báo", "Xem thư.", html))
    assert und.kind is Kind.SPAM
    assert "tên miền giả gov.vn" in und.why


def test_one_mismatched_link_alone_is_a_doubt_not_spam() -> None:
    html = ('<p>Bài báo: <a href="https://click.news-tracker.example/r/1">'
            'www.baotayninh.vn/bai-viet</a></p>')
    und = _judge(_mail("an@gmail.com", "Góp ý", "Xin gửi bài báo.", html))
    assert und.kind is not Kind.SPAM
    assert any("liên kết" in n and "baotayninh.vn" in n for n in und.trust_notes)


def test_a_mismatched_link_with_another_spam_signal_is_spam() -> None:
    html = '<a href="https://click.example.top/r/1">www.vietcombank.com.vn</a> trúng thưởng'
    und = _judge(_mail("an@gmail.com", "Nhận thưởng", "Bạn đã trúng thưởng.", html))
    assert und.kind is Kind.SPAM
    assert "liên kết hiện www.vietcombank.com.vn" in und.why


# ------------------------------------------------------------------ threading


def test_thread_ids_drop_comments_and_noise() -> None:
    assert thread_ids('<a@x.vn> (message from "An <b@x.vn>" of Mon)') == ["<a@x.vn>"]
    assert thread_ids("(Your message of Mon, 3 Mar) < a@x.vn >") == ["<a@x.vn>"]
    assert thread_ids("<<a@x.vn>>") == ["<a@x.vn>"]
    assert thread_ids("a@x.vn") == ["<a@x.vn>"]
    assert thread_ids('"An" <a@x.vn>, <b@x.vn>\t<a@x.vn>') == ["<a@x.vn>", "<b@x.vn>"]
    assert thread_ids("(unclosed <a@x.vn>") == []
    assert thread_ids("<" * 50_000) == []


def test_a_reply_joins_its_case_through_a_middle_entry_of_references() -> None:
    refs = [f"<r{i}@mail.example>" for i in range(40)]
    refs[20] = "<dossier@tayninh.gov.vn>"
    und = _judge(_mail("an@gmail.com", "Re: bổ sung", "Xin gửi bổ sung.",
                       headers=f"References: {' '.join(refs)}\r\n"))
    assert und.kind is Kind.REPLY
    assert und.case_ref == "HS-2025-000123"


@pytest.mark.parametrize("in_reply_to", [
    '<dossier@tayninh.gov.vn> (message from "Van thu" of Mon, 3 Mar 2025)',
    '(Van thu\'s message) <dossier@tayninh.gov.vn>',
    "< dossier@tayninh.gov.vn >",
    "<<dossier@tayninh.gov.vn>>",
    "dossier@tayninh.gov.vn",
])
def test_a_reply_joins_its_case_through_a_noisy_in_reply_to(in_reply_to: str) -> None:
    und = _judge(_mail("an@gmail.com", "Re: bổ sung", "Xin gửi bổ sung.",
                       headers=f"In-Reply-To: {in_reply_to}\r\n"))
    assert und.case_ref == "HS-2025-000123", und.why


@pytest.mark.parametrize("body", [
    "Kính gửi,\n\n---------- Forwarded message ---------\nFrom: Văn thư <vanthu@localhost>\n"
    "Subject: Tiếp nhận hồ sơ HS-2025-000123\n\nĐã tiếp nhận.",
    "Xin gửi bổ sung.\n\nVào Th 2, 3 thg 3, 2025 lúc 08:00 Văn thư đã viết:\n"
    "> Hồ sơ HS-2025-000123 cần bổ sung bản sao.",
    "Xin gửi bổ sung.\n> Mã hồ sơ: HS-2025-000123\n",
    "Xin gửi.\n\n-----Original Message-----\nFrom: vanthu@localhost\nSent: Monday\n"
    "Subject: HS-2025-000123",
])
def test_a_forward_or_quote_joins_its_case_by_the_code_in_the_body(body: str) -> None:
    und = _judge(_mail("an@gmail.com", "Fwd: bổ sung", body))
    assert und.kind is Kind.REPLY
    assert und.case_ref == "HS-2025-000123"
    assert "phần trích dẫn hoặc chuyển tiếp" in und.why


def test_a_case_code_in_the_own_words_of_a_mail_does_not_thread_it() -> None:
    und = _judge(_mail("an@gmail.com", "Hỏi", "Tôi muốn hỏi về hồ sơ HS-2025-000123."))
    assert und.case_ref is None


def test_a_code_of_a_case_that_does_not_exist_does_not_thread() -> None:
    und = _judge(_mail("an@gmail.com", "Fwd", "x\n> Mã hồ sơ HS-2025-999999\n"))
    assert und.case_ref is None


def test_quoted_text_is_the_quote_and_what_follows_a_forward_mark() -> None:
    body = "Mine HS-1\n> theirs HS-2\nmine again\n--- Original Message ---\nold HS-3"
    assert quoted_text(body) == "> theirs HS-2\n--- Original Message ---\nold HS-3"


def _encoded_word(text: str, b: bool) -> str:
    if b:
        return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="
    quoted = "".join(c if c.isascii() and c.isalnum() else
                     "".join(f"={x:02X}" for x in c.encode()) for c in text)
    return f"=?UTF-8?Q?{quoted.replace('=20', '_')}?="


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 35), min_size=1, max_size=3, unique=True),
       st.booleans(), st.sampled_from([" ", "\r\n ", "\r\n\t"]))
def test_a_case_code_split_across_encoded_words_threads(cuts: list[int], b: bool,
                                                        fold: str) -> None:
    """RFC 2047: white space between encoded words is not text, so a code cut by a mail
    program's encoder anywhere, in B or Q, on one line or folded, is read whole."""
    subject = "Bổ sung hồ sơ HS-2025-000123 theo yêu cầu"
    points = [0, *sorted(c for c in cuts if c < len(subject)), len(subject)]
    words = [subject[a:z] for a, z in itertools.pairwise(points) if subject[a:z]]
    und = _judge(_mail("an@gmail.com", fold.join(_encoded_word(w, b) for w in words),
                       "Xin gửi bổ sung."))
    assert und.case_ref == "HS-2025-000123", (words, und.why)
