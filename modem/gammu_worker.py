"""The process that runs python-gammu for :class:`modem.gammu.GammuModem`.

libGammu can crash the whole process on odd modem replies (see
``python-gammu-notes.md``), so it never runs inside the gateway. The parent
starts ``python -m modem.gammu_worker`` and speaks JSON lines with it:

* request  ``{"id": 7, "op": "send", "args": {...}}`` on stdin
* reply    ``{"id": 7, "ok": true, "result": ...}`` or
  ``{"id": 7, "ok": false, "error": {"kind": "gammu"|"sim"|"bug", "name": ..., "text": ..., "where": ...}}``
  on the original stdout (fd 1 is pointed at stderr so nothing libGammu prints
  can corrupt the protocol).

Ops: ``init``, ``status``, ``send``, ``inbound``, ``delete``, ``close``. One
request at a time; EOF on stdin ends the worker.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

import gammu

from modem.pdu import is_gsm7

logger = logging.getLogger(__name__)

# Busy SIM (right after power-up or PIN entry): how long init keeps retrying.
SIM_BUSY_RETRY_SECONDS = 30.0

# GetSecurityStatus() values (python-gammu 3.5 spells them "PIN", "PUK", ...), upper-cased.
_SECURITY_STATE = {
    "PIN": "SIM PIN",
    "PUK": "SIM PUK",
    "PIN2": "SIM PIN2",
    "PUK2": "SIM PUK2",
    "PHONE": "PH-SIM PIN",
    "NETWORK": "PH-NET PIN",
}


def security_state(raw: object) -> str:
    """``+CPIN``-style name of a GetSecurityStatus() value (None means no code needed)."""
    if raw is None:
        return "READY"
    return _SECURITY_STATE.get(str(raw).upper(), str(raw).upper())


_REGISTRATION = {
    "HomeNetwork": "home",
    "RoamingNetwork": "roaming",
    "RequestingNetwork": "searching",
    "RegistrationDenied": "denied",
    "NoNetwork": "unregistered",
    "Unknown": "unknown",
}


# Errors that mean the modem itself is unreachable, not that one query is unsupported.
_UNREACHABLE = (
    gammu.ERR_TIMEOUT,
    gammu.ERR_DEVICEREADERROR,
    gammu.ERR_DEVICEWRITEERROR,
    gammu.ERR_DEVICENOTEXIST,
    gammu.ERR_DEVICEOPENERROR,
    gammu.ERR_NOTCONNECTED,
)


class SimProblem(Exception):
    """The SIM needs something we cannot give (PIN missing or wrong, PUK, no SIM)."""


def error_reply(exc: BaseException) -> dict[str, Any]:
    """The ``error`` member of a failed reply."""
    if isinstance(exc, gammu.GSMError):
        info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        return {
            "kind": "gammu",
            "name": type(exc).__name__,
            "code": info.get("Code"),
            "text": str(info.get("Text", exc)),
            "where": str(info.get("Where", "")),
        }
    if isinstance(exc, SimProblem):
        return {"kind": "sim", "name": "SIM", "text": str(exc), "where": ""}
    return {
        "kind": "bug",
        "name": type(exc).__name__,
        "text": str(exc),
        "where": traceback.format_exc(limit=8),
    }


class Worker:
    """Owns one ``gammu.StateMachine``."""

    def __init__(self) -> None:
        self.sm: Any = None

    # -- ops

    def op_init(self, device: str, connection: str, model: str, pin: str | None) -> dict[str, Any]:
        sm = gammu.StateMachine()
        config = {"Device": device, "Connection": connection, "Model": model, "LockDevice": False}
        if connection == "none" and not device.endswith("/"):
            config["Device"] = device + "/"  # the dummy driver wants a directory path
        sm.SetConfig(0, config)
        sm.Init()
        self.sm = sm
        state = self._security_status()
        if state == "SIM PIN":
            if not pin:
                raise SimProblem("the SIM asks for a PIN and none is configured")
            try:
                sm.EnterSecurityCode("PIN", pin)
            except gammu.ERR_SECURITYERROR:
                raise SimProblem("the SIM refused the configured PIN") from None
            state = self._security_status()
        if state != "READY":
            raise SimProblem(f"the SIM is not ready: {state}")
        return {"sim": state}

    def _security_status(self) -> str:
        deadline = time.monotonic() + SIM_BUSY_RETRY_SECONDS
        while True:
            try:
                raw = self.sm.GetSecurityStatus()
            except (gammu.ERR_NOTSUPPORTED, gammu.ERR_NOTIMPLEMENTED):
                return "READY"  # phones without SIM locking (and the dummy driver)
            except (gammu.ERR_NOSIM, gammu.ERR_BUSY):
                # gammu reports +CME ERROR: 14 (SIM busy, for seconds after power-up or PIN
                # entry) as ERR_NOSIM: retry for a while before believing there is no SIM.
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
                continue
            return security_state(raw)

    def op_status(self) -> dict[str, Any]:
        sm = self._sm()

        failed = object()

        def attempt(fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except _UNREACHABLE:
                raise  # a silent or vanished modem fails the whole query (each would wait 20 s)
            except gammu.GSMError as exc:
                logger.debug("status: %s failed: %s", getattr(fn, "__name__", fn), type(exc).__name__)
                return failed

        def text(value: Any) -> str | None:
            return str(value) if value is not failed and value else None

        model = attempt(sm.GetModel)
        firmware = attempt(sm.GetFirmware)
        network = attempt(sm.GetNetworkInfo)
        network = network if isinstance(network, dict) else {}
        signal = attempt(sm.GetSignalQuality)
        signal = signal if isinstance(signal, dict) else {}
        smsc = attempt(lambda: sm.GetSMSC(Location=1))
        smsc = smsc if isinstance(smsc, dict) else {}
        security = attempt(sm.GetSecurityStatus)  # None means READY
        # The SIM store gammu reads from (it selects "SM"): a full one holds every further SMS.
        # (python-gammu offers no radio state nor access technology: those stay unknown.)
        sms_status = attempt(sm.GetSMSStatus)
        sms_status = sms_status if isinstance(sms_status, dict) else {}
        used, size = sms_status.get("SIMUsed"), sms_status.get("SIMSize")
        has_fill = isinstance(used, int) and isinstance(size, int) and size > 0
        strength = signal.get("SignalStrength")
        if isinstance(model, tuple):
            model_name = text(model[1]) if model[1] and model[1] != "unknown" else text(model[0])
        else:
            model_name = None
        return {
            "manufacturer": text(attempt(sm.GetManufacturer)),
            "model": model_name,
            "revision": text(firmware[0]) if isinstance(firmware, tuple) else None,
            "imei": text(attempt(sm.GetIMEI)),
            "sim": None if security is failed else security_state(security),
            "registration": _REGISTRATION.get(network.get("State", "")),
            "operator": network.get("NetworkName") or network.get("NetworkCode") or None,
            "signal_dbm": strength if isinstance(strength, int) and strength < 0 else None,
            "smsc": smsc.get("Number") or None,
            "storage_used": used if has_fill else None,
            "storage_total": size if has_fill else None,
        }

    def op_send(self, number: str, text: str, smsc: str | None) -> list[int]:
        sm = self._sm()
        parts = gammu.EncodeSMS(
            {
                "Class": -1,
                "Unicode": not is_gsm7(text),
                "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": text}],
            }
        )
        if not smsc:
            # Read it ourselves: inside SendSMS gammu turns a vanished port into ERR_EMPTYSMSC.
            smsc = str(sm.GetSMSC(Location=1).get("Number") or "")
            if not smsc:
                raise gammu.ERR_EMPTYSMSC({"Text": "the SIM has no SMSC", "Where": "GetSMSC", "Code": 31})
        # An explicit SMSC without Validity would get gammu's 5-minute TP-VP.
        smsc_field = {"Location": 0, "Number": smsc, "Validity": "Max"}
        refs: list[int] = []
        for part in parts:
            part["SMSC"] = smsc_field
            part["Number"] = number
            refs.append(int(sm.SendSMS(part)))
        return refs

    def op_inbound(self) -> list[dict[str, Any]]:
        """Every inbox message, multipart linked: one entry per (possibly partial) message."""
        sm = self._sm()
        found: list[list[dict[str, Any]]] = []
        location: int | None = None
        seen: set[int] = set()
        while True:
            try:
                if location is None:
                    batch = sm.GetNextSMS(Start=True, Folder=0)
                else:
                    batch = sm.GetNextSMS(Location=location, Folder=0)
            except gammu.ERR_EMPTY:
                break
            if not batch or batch[0]["Location"] in seen:
                break  # some drivers (and half-written dummy files) repeat a location forever
            location = batch[0]["Location"]
            seen.add(location)
            for message in batch:
                if message.get("InboxFolder", 1) and message.get("Type") == "Deliver":
                    found.append([message])
        out = []
        for group in gammu.LinkSMS(found):
            out.append(self._describe(group))
        return out

    @staticmethod
    def _describe(group: list[dict[str, Any]]) -> dict[str, Any]:
        first = group[0]
        udh = first.get("UDH") or {}
        concatenated = str(udh.get("Type", "")).startswith("ConcatenatedMessages")
        total = max(1, int(udh.get("AllParts") or 1)) if concatenated else 1
        complete = len(group) >= total
        text = None
        if complete and total > 1:
            try:
                decoded = gammu.DecodeSMS(group)
            except gammu.GSMError:
                decoded = None
            if decoded:
                text = "".join(str(e.get("Buffer") or "") for e in decoded.get("Entries", []) if e.get("Buffer"))
        if text is None:
            ordered = sorted(group, key=lambda m: (m.get("UDH") or {}).get("PartNumber", 0))
            text = "".join(_text_of(m) for m in ordered)
        sent_at = first.get("DateTime")
        if isinstance(sent_at, dt.datetime):
            # python-gammu 3 gives aware datetimes; a naive one is taken as local time.
            sent_at_iso: str | None = sent_at.astimezone().isoformat()
        else:
            sent_at_iso = None
        ref = udh.get("ID16bit", -1) if udh.get("ID16bit", -1) != -1 else udh.get("ID8bit", -1)
        return {
            "sender": str(first.get("Number") or ""),
            "text": text,
            "sent_at": sent_at_iso,
            "parts": len(group),
            "total": total,
            "complete": complete,
            "locations": [int(m["Location"]) for m in group],
            "key": f"{first.get('Number')}/{ref}/{total}",
        }

    def op_delete(self, locations: list[int]) -> None:
        sm = self._sm()
        for location in locations:
            try:
                sm.DeleteSMS(Folder=0, Location=location)
            except gammu.ERR_EMPTY:
                pass  # already gone

    def op_close(self) -> None:
        if self.sm is not None:
            try:
                self.sm.Terminate()
            except gammu.GSMError:
                pass
            self.sm = None

    def _sm(self) -> Any:
        if self.sm is None:
            raise gammu.ERR_NOTCONNECTED({"Text": "not initialised", "Where": "worker", "Code": 33})
        return self.sm

    # -- loop

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            return {
                "id": request.get("id"),
                "ok": False,
                "error": {"kind": "bug", "name": "op", "text": str(op)},
            }
        try:
            result = handler(**(request.get("args") or {}))
        except Exception as exc:
            return {"id": request.get("id"), "ok": False, "error": error_reply(exc)}
        return {"id": request.get("id"), "ok": True, "result": result}


def _text_of(message: dict[str, Any]) -> str:
    text = message.get("Text")
    if isinstance(text, bytes):
        return text.decode("latin-1")
    return str(text or "")


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    worker = Worker()
    for raw in requests:
        try:
            request = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(request, dict):
            continue
        reply = worker.handle(request)
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()
        if request.get("op") == "close":
            break
    worker.op_close()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("HBGW_GAMMU_LOG", "WARNING"),
        stream=sys.stderr,
        format="gammu-worker %(levelname)s %(message)s",
    )
    # Keep the protocol on a private descriptor; whatever else writes to fd 1 goes to stderr.
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    with os.fdopen(protocol_fd, "wb") as replies:
        serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
