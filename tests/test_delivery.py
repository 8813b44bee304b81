"""Delivery reports on the gateway's side: a report marks the SMS it reports on (every part of a
long one, every alert merged into it), a late "still trying" never undoes the final word, a
report for a message nobody knows changes nothing, and a network that sends no reports is
shown as such, not as failures. A real store and service; the modem side (the reports
themselves) is tested in test_delivery_reports.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.model import OutboxRow
from gateway.readmodels import REPORTS_AFTER, delivery_reports
from gateway.service import Service
from gateway.store import Store

T0 = 1_800_000_000.0
OWNER = "+15551230000"


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with Store(tmp_path / "hbgw.sqlite3") as store:
        yield Service(store, Config(data_dir=tmp_path), clock=Clock())


def sent(service: Service, refs: str, *, n: int = 1, to: str = OWNER, at: float = T0) -> list[int]:
    """``n`` alerts to ``to`` sent as one message with the modem's references ``refs``."""

    async def go() -> list[int]:
        ids = [await service.store.awrite_message("down", "sms", to, f"DOWN web{i}", at) for i in range(n)]
        claimed = await service.store.claim_due(at, 300)
        assert sorted(r.id for g in claimed for r in g) == sorted(ids)
        await service.store.mark_sent(ids, refs, at)
        return ids

    return asyncio.run(go())


def row(service: Service, oid: int) -> OutboxRow:
    return next(r for r in service.views.outbox(100) if r.id == oid)


def report(service: Service, ref: int, state: str, reason: str = "", to: str = OWNER, at: float = T0 + 5) -> int:
    return asyncio.run(service.smspath.record_delivery_report(to, ref, state, reason or state, at))


def test_a_report_marks_its_sms_delivered(service: Service) -> None:
    (oid,) = sent(service, "17")
    assert row(service, oid).delivery_state is None  # sent, no report yet
    assert report(service, 17, "delivered", at=T0 + 4) == 1
    r = row(service, oid)
    assert (r.delivery_state, r.delivered_at, r.state) == ("delivered", T0 + 4, "sent")
    assert r.to_json()["delivery"] == "delivered"


def test_a_long_sms_is_delivered_when_every_part_is(service: Service) -> None:
    (oid,) = sent(service, "17,18,19")
    report(service, 18, "delivered")
    assert row(service, oid).delivery_state == "pending"
    report(service, 17, "delivered")
    report(service, 19, "delivered", at=T0 + 9)
    assert (row(service, oid).delivery_state, row(service, oid).delivered_at) == ("delivered", T0 + 9)


def test_merged_alerts_share_their_message_s_report(service: Service) -> None:
    ids = sent(service, "40", n=3)
    assert report(service, 40, "delivered") == 3
    assert {row(service, i).delivery_state for i in ids} == {"delivered"}


def test_still_trying_then_the_final_word_and_never_back(service: Service) -> None:
    (oid,) = sent(service, "5")
    report(service, 5, "pending", "recipient absent, still trying")
    r = row(service, oid)
    assert (r.delivery_state, r.delivery_note) == ("pending", "recipient absent, still trying")
    report(service, 5, "failed", "unknown subscriber")
    assert (row(service, oid).delivery_state, row(service, oid).delivery_note) == ("failed", "unknown subscriber")
    report(service, 5, "pending", "a late duplicate")
    assert row(service, oid).delivery_state == "failed"  # the final word stays


def test_a_report_for_no_message_we_know_changes_nothing(service: Service) -> None:
    (oid,) = sent(service, "7")
    assert report(service, 8, "delivered") == 0  # another reference
    assert report(service, 7, "delivered", to="+15559999999") == 0  # another recipient
    assert report(service, 7, "delivered", at=T0 + 8 * 86400) == 0  # long after
    assert row(service, oid).delivery_state is None


def test_a_wrapped_reference_marks_the_newest_message_only(service: Service) -> None:
    (old,) = sent(service, "3", at=T0)
    (new,) = sent(service, "3", at=T0 + 3600)  # references wrap at 256
    report(service, 3, "delivered", at=T0 + 3601)
    assert (row(service, old).delivery_state, row(service, new).delivery_state) == (None, "delivered")


def test_a_network_without_reports_is_named_not_failed(service: Service) -> None:
    for i in range(3):
        sent(service, str(i), at=T0 + i)
    rows = service.views.outbox(50)
    assert delivery_reports(rows, T0 + 60) is None  # too early to tell
    assert "no delivery reports from this network" in (delivery_reports(rows, T0 + REPORTS_AFTER + 10) or "")
    report(service, 2, "delivered")
    assert delivery_reports(service.views.outbox(50), T0 + REPORTS_AFTER + 10) is None


def test_a_report_faster_than_the_dispatcher_is_applied_once_the_sms_is_marked_sent(service: Service) -> None:
    async def go() -> int:
        oid = await service.store.awrite_message("down", "sms", OWNER, "DOWN web1", T0)
        await service.store.claim_due(T0, 300)
        # the network's report arrives while the message is still "sending"
        assert await service.smspath.record_delivery_report(OWNER, 9, "delivered", "delivered", T0 + 1) == 0
        await service.store.mark_sent([oid], "9", T0)
        await service.smspath.sent_with_refs(OWNER, "9")
        return oid

    oid = asyncio.run(go())
    assert row(service, oid).delivery_state == "delivered"
