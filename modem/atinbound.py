"""``InboundReader``: the inbound side of :class:`~modem.atmodem.AtModem`. One task reads
what ``+CMTI``/``+CMT``/``+CDS``/``+CDSI``/storage-full reports queued (``AT+CMGL``,
``AT+CMGR``), decodes and reassembles it, hands complete messages to the inbound handler and
status reports to the report handler, and deletes them from storage (``AT+CMGD``, retried
when refused); it lists storage on a timer when the modem refuses
``AT+CNMI``. It also chooses the storage at init and moves to the modem's own memory once
the SIM store is empty; :func:`storage_fill` reads ``AT+CPMS?`` for AtModem's status."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modem.at import (
    SIM_BUSY_CME,
    SIM_BUSY_CMS,
    AtChannel,
    StoredPdu,
    parse_cmgl,
    parse_cmgr,
    parse_cpms,
    parse_cpms_support,
)
from modem.errors import CmeError, CmsError, CommandError, ModemError, ModemTimeout, PduError, PortGone
from modem.interface import InboundHandler, InboundSms, ReportHandler
from modem.pdu import (
    Deliver,
    Reassembled,
    Reassembler,
    StatusReport,
    decode_pdu,
    delivery_report,
    salvage_deliver,
    unreadable_text,
)

logger = logging.getLogger(__name__)


REFUSED = (CmeError, CmsError, CommandError)  # the modem answered, with an error


@dataclass(frozen=True, slots=True)
class _ReadJob:
    mem: str
    index: int


@dataclass(frozen=True, slots=True)
class _ListJob:
    pass


@dataclass(frozen=True, slots=True)
class _PduJob:
    pdu: str
    report: bool = False  # a +CDS status report (its PDU may come without the SMSC field)
    length: int | None = None  # the TPDU length the URC announced


_InboundJob = _ReadJob | _ListJob | _PduJob


class InboundReader:
    """Inbound SMS of one :class:`~modem.atmodem.AtModem`, processed by one task (:meth:`start`):
    the URC handlers only queue work (:meth:`queue_read`, :meth:`queue_list`,
    :meth:`queue_pdu`), the reader thread never waits for it.

    What it needs of the modem is given, not reached for: ``channel`` returns the open
    channel or raises PortGone; ``optional`` runs a command whose refusal is not fatal (None
    when refused); the lock that serialises all talk to the modem comes with each
    :meth:`new_session`. ``url`` names the modem in logs and the task. The timeouts and
    intervals are AtModem's (``list_timeout``, ``multipart_timeout``, ``poll_interval``,
    ``delete_retry_interval``).

    Every message that reaches storage leaves it again, so a full SIM never makes the network
    hold the owner's next command: it is handed to :attr:`handler`, then deleted. One we
    cannot decode is handed over raw (``InboundSms.undecodable``); a slot that cannot be read
    at all is deleted after one log line; a refused deletion is tried again, never forgotten.
    Only a failing handler keeps a message (read again at the next open).
    """

    def __init__(
        self,
        url: str,
        *,
        channel: Callable[[], AtChannel],
        optional: Callable[[AtChannel, str], Awaitable[list[str] | None]],
        lock: asyncio.Lock,
        command_timeout: float,
        list_timeout: float,
        multipart_timeout: float,
        poll_interval: float,
        delete_retry_interval: float,
    ) -> None:
        self._url = url
        self._channel = channel
        self._optional = optional
        self._lock = lock
        self._command_timeout = command_timeout
        self._list_timeout = list_timeout
        self._multipart_timeout = multipart_timeout
        self._poll_interval = poll_interval
        self._delete_retry_interval = delete_retry_interval
        self.handler: InboundHandler | None = None
        self.report_handler: ReportHandler | None = None
        self._queue: asyncio.Queue[_InboundJob] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # The one record of multipart parts waiting for the rest, and of their storage indexes.
        self._reassembler = Reassembler(multipart_timeout, max_pending=1024)
        self._failed: set[int] = set()  # indexes whose hand-over failed in this session
        # What each slot held when read, and the slots handed over whose deletion was refused
        # (index -> that PDU): not handed over again, deleted again every delete_retry_interval.
        self._pdu_at: dict[int, str] = {}
        self._undeleted: dict[int, str] = {}
        self._next_delete_retry = 0.0
        self._mem1: str | None = None  # the storage messages are read from, as init chose it
        # The modem's own memory ("ME"), chosen while the SIM store still held messages:
        # switched to once a listing finds the SIM store empty.
        self._storage_wanted: str | None = None
        self._polling = False
        self._next_poll = 0.0

    # -- driven by AtModem ------------------------------------------------------------------

    def new_session(self, lock: asyncio.Lock) -> None:
        """Before each open: forget this session's failed and undeleted slots, and take the
        fresh lock and queue (the object may be reopened from another event loop)."""
        self._failed.clear()
        self._pdu_at.clear()
        self._undeleted.clear()
        self._lock = lock
        self._queue = asyncio.Queue()
        self._storage_wanted = None

    def start(self) -> None:
        """Start the inbound task and queue the messages stored while offline."""
        self._task = asyncio.create_task(self._inbound_loop(), name=f"inbound {self._url}")
        self._queue.put_nowait(_ListJob())

    async def stop(self) -> None:
        """Cancel the inbound task and wait for it to end. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def init_storage(self, ch: AtChannel) -> None:
        """Init (the lock held): choose the storage messages are read from (mem1)."""
        self._mem1 = await self._choose_storage(ch)

    def set_polling(self, polling: bool) -> None:
        """Whether storage is listed every ``poll_interval`` (the modem refuses ``AT+CNMI``)."""
        self._polling = polling
        if polling:
            self._next_poll = time.monotonic() + self._poll_interval

    def queue_read(self, mem: str, index: int) -> None:
        """``+CMTI``: read the message at ``index`` of storage ``mem``."""
        self._queue.put_nowait(_ReadJob(mem, index))

    def queue_list(self) -> None:
        """List the whole storage (a storage-full report)."""
        self._queue.put_nowait(_ListJob())

    def queue_pdu(self, pdu: str) -> None:
        """``+CMT``: a message delivered straight to us, not stored."""
        self._queue.put_nowait(_PduJob(pdu))

    def queue_report(self, pdu: str, length: int | None) -> None:
        """``+CDS``: a status report delivered straight to us (``length``: its TPDU octets)."""
        self._queue.put_nowait(_PduJob(pdu, report=True, length=length))

    def check_storage_used(self, used: int) -> None:
        """``AT+CPMS?`` said ``used`` slots are in use (AtModem.status)."""
        if used > len(self._known_slots()) and self._queue.empty():
            # More slots in use than messages we wait on: a +CMTI went missing (or came while
            # the storage was being listed). List it, so nothing sits there until a restart.
            self._queue.put_nowait(_ListJob())

    # -- inbound processing (one task) ------------------------------------------------------

    def _wake_in(self) -> float:
        waits = [max(0.05, min(60.0, self._multipart_timeout / 4))]
        if self._polling:
            waits.append(max(0.0, self._next_poll - time.monotonic()))
        if self._undeleted:
            waits.append(max(0.0, self._next_delete_retry - time.monotonic()))
        return min(waits)

    async def _inbound_loop(self) -> None:
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # a cancellation some library call swallowed
            job: _InboundJob | None
            # not wait_for: on 3.11 it can swallow the cancellation that close() sends as a job
            # arrives, and the loop (and close()) would then never end
            try:
                async with asyncio.timeout(self._wake_in()):
                    job = await self._queue.get()
            except TimeoutError:
                job = None
            if job is None and self._polling and time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self._poll_interval
                job = _ListJob()
            try:
                if job is not None:
                    await self._run_job(job)
                await self._expire()
                if self._undeleted and time.monotonic() >= self._next_delete_retry:
                    self._next_delete_retry = time.monotonic() + self._delete_retry_interval
                    await self._retry_deletes()
            except PortGone:
                return
            except ModemError as exc:
                logger.warning("inbound SMS processing failed: %s", exc)
            except Exception:
                logger.exception("bug in inbound SMS processing")

    async def _run_job(self, job: _InboundJob) -> None:
        if isinstance(job, _PduJob):
            if job.report:
                await self._direct_report(job)
                return
            await self._accept([StoredPdu(None, 0, None, job.pdu)])
            return
        if isinstance(job, _ReadJob) and job.mem == "SR" and self._mem1 not in (None, "SR"):
            await self._read_status_storage(job.index)
            return
        lines: list[str] | None
        async with self._lock:
            ch = self._channel()
            if isinstance(job, _ListJob):
                try:
                    lines = await ch.command("AT+CMGL=4", timeout=self._list_timeout)
                except (CmsError, CmeError) as exc:
                    # "+CMS ERROR: 321" (invalid memory index) / "+CME ERROR: 22" (not found):
                    # how many modems answer a listing of an empty store.
                    if (isinstance(exc, CmsError) and exc.code == 321) or (
                        isinstance(exc, CmeError) and exc.code == 22
                    ):
                        logger.debug("AT+CMGL: no messages (%s)", exc)
                        lines = []
                    else:
                        raise
                items = parse_cmgl(lines)
                # A slot listed without a PDU we could take (a garbled line): read it alone.
                listed = {i.index for i in items}
                for index in _cmgl_indexes(lines) - listed:
                    self._queue.put_nowait(_ReadJob(self._mem1 or "SM", index))
                if not lines and not self._known_slots():
                    await self._move_storage(ch)
            else:
                if self._reassembler.holds(job.index):
                    return
                if (
                    self._mem1 is not None
                    and job.mem != self._mem1
                    and await self._optional(ch, f'AT+CPMS="{job.mem}"') is not None
                ):
                    self._mem1 = job.mem
                try:
                    lines = await ch.command(f"AT+CMGR={job.index}", timeout=self._command_timeout)
                except (CmsError, CmeError) as exc:
                    if exc.code in (21, 22, 321):  # already gone (handled via +CMGL)
                        return
                    if exc.code in (SIM_BUSY_CMS if isinstance(exc, CmsError) else SIM_BUSY_CME):
                        raise  # passes: the next status refresh sees the slot used and lists it
                    lines = None
                except CommandError:
                    lines = None
                stored = parse_cmgr(lines, job.index) if lines is not None else None
                if stored is None and lines != []:  # [] is an empty slot; the rest is garbage
                    # Kept, it would take a slot for good and be read again at every listing.
                    logger.warning("stored SMS at index %d cannot be read; deleted", job.index)
                    await self._delete_locked(ch, [job.index])
                    return
                items = [stored] if stored is not None else []
        await self._accept(items)
        if isinstance(job, _ListJob) and items and self._storage_wanted and not self._known_slots():
            self._queue.put_nowait(_ListJob())  # emptied, unless more came: list to see, then move

    async def _choose_storage(self, ch: AtChannel) -> str | None:
        """Prefer the modem's own memory ("ME": larger than the SIM's few slots, and no wear
        on the SIM) for reading, writing and receiving, where ``AT+CPMS=?`` offers it for all
        three. While the SIM store still holds messages it stays in use until a listing
        has emptied it (:attr:`_storage_wanted`). Returns the read storage (mem1)."""
        current = await self._optional(ch, "AT+CPMS?") or []
        mem1 = parse_cpms(current)
        offered = next((parse_cpms_support(line) for line in await self._optional(ch, "AT+CPMS=?") or []), ())
        if len(offered) < 3 or not all("ME" in mems for mems in offered[:3]):
            return mem1
        storages = _storages(current)
        if [name for name, _, _ in storages[:3]] == ["ME", "ME", "ME"]:
            return "ME"
        if storages and storages[0][0] != "ME" and storages[0][1] > 0:
            logger.info(
                "modem %s: SMS storage %s still holds messages; the modem's memory is used once it is empty",
                self._url,
                storages[0][0],
            )
            self._storage_wanted = "ME"
            return mem1
        if await self._optional(ch, 'AT+CPMS="ME","ME","ME"') is None:
            return mem1
        logger.info("modem %s: SMS are kept in the modem's memory (ME), not on the SIM", self._url)
        return "ME"

    async def _move_storage(self, ch: AtChannel) -> None:
        """The SIM store is empty now: move to the storage :meth:`_choose_storage` wanted."""
        wanted = self._storage_wanted
        if wanted is None or self._mem1 == wanted:
            return
        cmd = f'AT+CPMS="{wanted}","{wanted}","{wanted}"'
        if await self._optional(ch, cmd) is not None:
            logger.info(
                "modem %s: SIM store empty; SMS are kept in the modem's memory (%s) from now on", self._url, wanted
            )
            self._mem1 = wanted
        self._storage_wanted = None

    async def _accept(self, items: list[StoredPdu]) -> None:
        """Decode stored/received PDUs, reassemble, hand complete messages over."""
        now = time.monotonic()
        for item in items:
            if item.stat in (2, 3):  # our own outgoing drafts
                continue
            if item.index is not None:
                if self._reassembler.holds(item.index) or item.index in self._failed:
                    continue
                if item.index in self._undeleted:
                    if self._undeleted[item.index] == item.pdu:
                        continue  # handed over already; its deletion is retried
                    del self._undeleted[item.index]  # freed after all, and a new message came
                self._pdu_at[item.index] = item.pdu
            storage = () if item.index is None else (item.index,)
            try:
                # lenient: user data with octets too many or too few is read as far as it goes
                msg = decode_pdu(item.pdu, smsc=True, lenient=True)
            except PduError as exc:
                await self._accept_undecodable(item, storage, exc)
                continue
            if isinstance(msg, StatusReport):
                await self._give_report(msg)
                await self._delete(list(storage))  # a report is a marker: never kept
                continue
            if not isinstance(msg, Deliver):
                logger.warning("stored SMS at index %s is not an incoming message; deleted", item.index)
                await self._delete(list(storage))
                continue
            if msg.damaged:
                logger.warning(
                    "damaged SMS at index %s read as far as it goes: %s", item.index, "; ".join(msg.problems)
                )
            whole = self._reassembler.put(msg, now, storage)
            if whole is not None:
                await self._hand_over(whole)

    async def _direct_report(self, job: _PduJob) -> None:
        """A ``+CDS`` PDU: with the SMSC field or without (27.005 allows both; the length the
        URC announced tells). One that cannot be decoded is logged and dropped."""
        raw = job.pdu.strip()
        with_smsc = job.length is None or len(raw) // 2 != job.length
        try:
            msg = decode_pdu(raw, smsc=with_smsc)
        except PduError:
            try:
                msg = decode_pdu(raw, smsc=not with_smsc)
            except PduError as exc:
                logger.warning("undecodable status report (%d hex digits) dropped: %s", len(raw), exc)
                return
        if not isinstance(msg, StatusReport):
            logger.warning("+CDS carried no status report; dropped")
            return
        await self._give_report(msg)

    async def _read_status_storage(self, index: int) -> None:
        """``+CDSI: "SR",<index>``: a report kept in the status report storage. Read and
        deleted there (``AT+CPMS="SR"``), then the read storage is set back, all under the
        lock, so no later ``AT+CMGD`` meets the wrong storage; then handed over."""
        previous = self._mem1
        lines: list[str] | None = None
        async with self._lock:
            ch = self._channel()
            if await self._optional(ch, 'AT+CPMS="SR"') is None:
                logger.warning("status report %d in storage SR cannot be reached; left there", index)
                return
            try:
                try:
                    lines = await ch.command(f"AT+CMGR={index}", timeout=self._command_timeout)
                except REFUSED as exc:
                    logger.warning("status report %d in storage SR cannot be read (%s); deleted", index, exc)
                await self._optional(ch, f"AT+CMGD={index}")
            finally:
                await self._optional(ch, f'AT+CPMS="{previous}"')
        stored = parse_cmgr(lines, index) if lines else None
        if stored is None:
            return
        try:
            msg = decode_pdu(stored.pdu, smsc=True)
        except PduError as exc:
            logger.warning("undecodable status report from storage SR dropped: %s", exc)
            return
        if isinstance(msg, StatusReport):
            await self._give_report(msg)

    async def _give_report(self, report: StatusReport) -> None:
        """Hand a status report to the report handler (none set: ignored). A failing handler
        is logged; the report is not kept either way."""
        handler = self.report_handler
        if handler is None:
            logger.debug("status report ignored (no report handler)")
            return
        try:
            await handler(delivery_report(report))
        except Exception:
            logger.exception("status report handler failed; report dropped")

    async def _accept_undecodable(self, item: StoredPdu, storage: tuple[int, ...], exc: PduError) -> None:
        """A PDU we cannot decode: handed over raw when its sender can be read, else deleted.
        Kept, it would be skipped forever and fill the SIM until the network holds everything."""
        raw = salvage_deliver(item.pdu, smsc=True)
        if raw.sender is None:
            logger.warning("unreadable SMS PDU at index %s (%d hex digits: %s) deleted", item.index, len(item.pdu), exc)
            await self._delete(list(storage))
            return
        logger.warning("undecodable SMS at index %s (%s) handed over raw", item.index, exc)
        sms = InboundSms(
            sender=raw.sender,
            text=unreadable_text(raw),
            sent_at=raw.timestamp,
            received_at=dt.datetime.now(dt.UTC),
            storage=storage,
            undecodable=True,
        )
        await self._give(sms)

    async def _expire(self) -> None:
        """Hand over the multipart messages the reassembler gave up on: timed out, or pushed
        out by newer sets. Their storage indexes come with them, so they are deleted too."""
        for whole in self._reassembler.take_expired(time.monotonic()):
            logger.info("multipart SMS incomplete (%d part(s) arrived): handed over", whole.parts)
            await self._hand_over(whole)

    async def _hand_over(self, whole: Reassembled) -> None:
        msg = whole.message
        sms = InboundSms(
            sender=msg.sender,
            text=msg.text,
            sent_at=msg.timestamp,
            received_at=dt.datetime.now(dt.UTC),
            parts=whole.parts,
            complete=whole.complete,
            storage=whole.storage,
            damaged=msg.damaged,
        )
        await self._give(sms)

    async def _give(self, sms: InboundSms) -> None:
        """Hand ``sms`` to the handler (it stores it), then delete it from storage."""
        handler = self.handler
        if handler is None:
            logger.warning("inbound SMS left in storage: no handler set")
            return
        try:
            await handler(sms)  # outside the lock: the handler may send a reply
        except Exception:
            # Kept in storage and read again at the next open, not on every +CMTI/listing
            # in this session: a message that breaks the handler must not loop.
            logger.exception("inbound SMS handler failed; message kept in storage")
            self._failed.update(sms.storage)
            return
        await self._delete(list(sms.storage))

    async def _delete(self, indexes: list[int]) -> None:
        if not indexes:
            return
        async with self._lock:
            await self._delete_locked(self._channel(), indexes)

    async def _delete_locked(self, ch: AtChannel, indexes: list[int]) -> None:
        """``AT+CMGD`` each index; one refused (or left by a timeout) is remembered with the
        PDU it held and deleted again later (:meth:`_retry_deletes`), never handed over twice."""
        for n, index in enumerate(indexes):
            try:
                await ch.command(f"AT+CMGD={index}", timeout=self._command_timeout)
            except REFUSED as exc:
                if index not in self._undeleted:
                    logger.warning(
                        "could not delete stored SMS %d (%s); trying again every %g s",
                        index,
                        exc,
                        self._delete_retry_interval,
                    )
                    self._next_delete_retry = min(
                        self._next_delete_retry or float("inf"), time.monotonic() + self._delete_retry_interval
                    )
                self._undeleted[index] = self._pdu_at.get(index, "")
                continue
            except ModemTimeout:
                for left in indexes[n:]:
                    self._undeleted[left] = self._pdu_at.get(left, "")
                self._next_delete_retry = time.monotonic() + self._delete_retry_interval
                raise
            self._undeleted.pop(index, None)
            self._pdu_at.pop(index, None)

    async def _retry_deletes(self) -> None:
        """Delete again what :meth:`_delete_locked` could not: a slot that holds something
        else by now (freed after all, then reused) is read as a new message instead."""
        async with self._lock:
            ch = self._channel()
            for index, pdu in list(self._undeleted.items()):
                lines: list[str] | None
                try:
                    lines = await ch.command(f"AT+CMGR={index}", timeout=self._command_timeout)
                except (CmsError, CmeError) as exc:
                    lines = [] if exc.code in (21, 22, 321) else None
                except CommandError:
                    lines = None
                if lines is not None:
                    stored = parse_cmgr(lines, index)
                    if stored is None or (pdu and stored.pdu != pdu):
                        del self._undeleted[index]
                        self._pdu_at.pop(index, None)
                        if stored is not None:
                            self._queue.put_nowait(_ReadJob(self._mem1 or "SM", index))
                        continue
                await self._delete_locked(ch, [index])
                if index not in self._undeleted:
                    logger.info("stored SMS %d deleted at a later try", index)

    def _known_slots(self) -> set[int]:
        """Slots holding messages we know of and keep for now."""
        return self._reassembler.slots() | self._failed | set(self._undeleted)


_CPMS_MEM = re.compile(r'"?(\w+)"?\s*,\s*(\d+)\s*,\s*(\d+)')
_CMGL_INDEX = re.compile(r"\+CMGL:\s*(\d+)")


def _storages(lines: list[str]) -> list[tuple[str, int, int]]:
    """``AT+CPMS?`` → (name, used, total) of mem1, mem2, mem3, as far as reported."""
    for line in lines:
        if line.strip().startswith("+CPMS:"):
            found = _CPMS_MEM.findall(line.split(":", 1)[1])
            return [(name.upper(), int(used), int(total)) for name, used, total in found]
    return []


def storage_fill(lines: list[str]) -> tuple[int, int] | None:
    """``AT+CPMS?`` → (used, total) of the receive storage (mem3; the last one reported when
    the modem lists fewer); None when not reported."""
    mems = _storages(lines)
    if not mems:
        return None
    _, used, total = mems[min(2, len(mems) - 1)]
    return used, total


def _cmgl_indexes(lines: list[str]) -> set[int]:
    """The indexes an ``AT+CMGL`` reply announced, whether or not a PDU followed."""
    return {int(m.group(1)) for line in lines if (m := _CMGL_INDEX.match(line.strip()))}
