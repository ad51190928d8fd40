"""Prometheus metrics: the real daemon with its endpoint on a free loopback port and its
textfile, mail through Dovecot and the SMTP sink, the figures scraped with urllib and parsed
with prometheus_client's own parser; the database-read figures on a desk; careless configs."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, func, select

from daemon import config
from daemon.db import outbox
from daemon.errors import ConfigError
from daemon.metrics import DatabaseCollector, Metrics
from daemon.routing import rules as rules_module
from daemon.service import Daemon
from tests.conftest import CORPUS, Office
from tests.desk import DOCUMENT, Desk, mail
from tests.servers import free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode("utf-8"))


def _metrics_on(office: Office, port: int, textfile: Path) -> None:
    with office.config_path.open("a", encoding="utf-8") as file:
        file.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\ntextfile = "{textfile}"\n'
                   "interval_seconds = 1\n")


def test_the_running_daemon_reports_the_mailroom(office: Office, tmp_path: Path) -> None:
    """A document registered and forwarded, a forged official mail held: the endpoint and the
    textfile say so, with the fetch time, the outbox and both latencies."""
    port, textfile = free_port(), tmp_path / "prom" / "vanthu.prom"
    textfile.parent.mkdir()
    _metrics_on(office, port, textfile)
    forged = mail("vanphong@tayninh.gov.vn", "Công văn số 1000/UBND-KT", DOCUMENT,
                  authenticated=False)
    began = time.time()
    office.deliver((CORPUS / "008.eml").read_bytes(), forged)
    seen: list[str] = []

    def scraped() -> bool:
        if not office.settled(2):
            return False
        text = scrape(port)
        found = samples(text)
        sent = office.count(outbox)
        if value(found, "vanthu_send_latency_seconds_count") < sent or not textfile.exists():
            return False  # the next scrape sees the last email sent
        written = samples(textfile.read_text(encoding="utf-8"))
        if written.get(("vanthu_mails_stored", (("kind", "document"),))) != 2:
            return False  # written again within interval_seconds
        seen.append(text)
        return True

    office.run_daemon(until=scraped)
    found = samples(seen[0])
    assert value(found, "vanthu_database_up") == 1
    assert value(found, "vanthu_mails_stored", kind="document") == 2
    assert value(found, "vanthu_mails_quarantined", kind="document") == 1
    assert value(found, "vanthu_mails", state="quarantined", kind="document") == 1
    registered = {labels: v for (name, labels), v in found.items()
                  if name == "vanthu_mails_registered"}
    assert sum(registered.values()) == 1 and dict(next(iter(registered)))["kind"] == "document"
    engine = office.engine()
    with engine.connect() as conn:
        sent = conn.scalar(select(func.count()).where(outbox.c.state == "sent")) or 0
    engine.dispose()
    assert sent >= 1
    assert value(found, "vanthu_outbox_emails", state="sent") == sent
    assert value(found, "vanthu_outbox_emails", state="pending") == 0
    assert value(found, "vanthu_outbox_oldest_pending_age_seconds") == 0
    fetched = value(found, "vanthu_mailbox_last_fetch_timestamp_seconds",
                    mailbox="agency", folder="INBOX")
    assert began - 5 <= fetched <= time.time()
    assert value(found, "vanthu_pipeline_latency_seconds_count") == 1
    assert value(found, "vanthu_pipeline_latency_seconds_bucket", le="+Inf") == 1
    assert value(found, "vanthu_send_latency_seconds_count") == sent
    assert value(found, "vanthu_worker_restarts_total") == 0
    assert value(found, "vanthu_pipeline_batch_seconds_count") >= 1
    # The textfile: whole (renamed into place), parseable, the same mailroom.
    written = samples(textfile.read_text(encoding="utf-8"))
    assert value(written, "vanthu_mails_stored", kind="document") == 2
    assert not [p for p in textfile.parent.iterdir() if p != textfile]
    # Stopped: the endpoint is closed.
    with pytest.raises(OSError):
        scrape(port)


def test_figures_read_from_the_database_add_each_row_once(tmp_path: Path) -> None:
    """On a desk (no daemon): an email waiting shows its age; scraping again adds no latency
    twice; the textfile parses."""
    desk = Desk(tmp_path)
    desk.receive(mail("vanphong@tayninh.gov.vn", "Công văn số 1000/UBND-KT", DOCUMENT))
    desk.process()
    metrics = Metrics(config.MetricsConfig(textfile=str(tmp_path / "v.prom")), desk.engine,
                      lambda: 3)
    metrics.write()
    first = samples((tmp_path / "v.prom").read_text(encoding="utf-8"))
    metrics.write()
    again = samples((tmp_path / "v.prom").read_text(encoding="utf-8"))
    pending = len(desk.emails_for(1))
    assert pending >= 1
    assert value(first, "vanthu_outbox_emails", state="pending") == pending
    assert value(first, "vanthu_outbox_oldest_pending_age_seconds") >= 0
    assert value(first, "vanthu_pipeline_latency_seconds_count") == 1
    assert value(again, "vanthu_pipeline_latency_seconds_count") == 1
    assert value(again, "vanthu_worker_restarts_total") == 3
    # Sent now: the send latency counts each email once, however often it is read.
    with desk.engine.begin() as conn:
        conn.execute(outbox.update().values(state="sent", sent_at=func.current_timestamp()))
    conn_text = []
    for _ in range(3):
        metrics.write()
        conn_text.append(samples((tmp_path / "v.prom").read_text(encoding="utf-8")))
    assert [value(s, "vanthu_send_latency_seconds_count") for s in conn_text] == [pending] * 3


def test_a_database_that_does_not_answer_is_reported_not_raised(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'vanthu.db'}")
    families = {f.name: f for f in DatabaseCollector(engine, lambda: 0).collect()}
    assert families["vanthu_database_up"].samples[0].value == 0
    assert families["vanthu_worker_restarts"].samples[0].value == 0


def _problem(tmp_path: Path, metrics: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        config.parse({"metrics": metrics}, file="config.toml", text="", base=tmp_path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("metrics", "says"), [
    ({"listen": "0.0.0.0:9464"}, "reachable from other machines"),
    ({"listen": "203.0.113.7:9464"}, "allow_remote"),
    ({"listen": "[::]:9464"}, "reachable from other machines"),
    ({"listen": "127.0.0.1:99999"}, "port from 1 to 65535"),
    ({"listen": "127.0.0.1"}, "HOST:PORT"),
    ({"listen": "127.0.0.1:0"}, "port from 1 to 65535"),
    ({"listen": "máy-chủ.sở-xây-dựng:9464"}, "IP address or localhost"),
    ({"listen": 9464}, "expected str"),
    ({"allow_remote": "yes", "listen": "127.0.0.1:9464"}, "expected bool"),
    ({"textfile": "/proc/vanthu.prom"}, "not writable"),
    ({"textfile": "không-có-thư-mục/vanthu.prom"}, "does not exist"),
    ({"textfile": "vanthu.txt"}, "must end with .prom"),
    ({"interval_seconds": 0}, "1 to 3600"),
    ({"listen": "127.0.0.1:9464", "port": 9464}, "unknown key"),
])
def test_a_careless_metrics_config_is_one_clear_line(tmp_path: Path, metrics: dict[str, object],
                                                    says: str) -> None:
    line = _problem(tmp_path, metrics)
    assert "metrics." in line and says in line, line


def test_a_remote_address_is_allowed_when_asked_and_off_is_the_default(tmp_path: Path) -> None:
    cfg = config.parse({"metrics": {"listen": "0.0.0.0:9464", "allow_remote": True}},
                       file="t", text="", base=tmp_path)
    assert cfg.metrics.address == ("0.0.0.0", 9464)
    assert config.parse({}, file="t", text="", base=tmp_path).metrics.listen == ""
    assert config.parse({"metrics": {"listen": "[::1]:9464"}}, file="t", text="",
                        base=tmp_path).metrics.address == ("::1", 9464)


def test_a_port_already_taken_stops_the_start_with_a_clear_error(office: Office,
                                                                 tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with office.config_path.open("a", encoding="utf-8") as file:
            file.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        cfg = office.cfg
        with pytest.raises(ConfigError) as caught:
            Daemon(cfg, rules_module.load(cfg.rules.dir))
    assert f"cannot listen on 127.0.0.1:{port}" in str(caught.value)
