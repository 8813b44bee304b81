"""The simulator's JSON-lines control socket (:class:`ControlServer`) and its client
(:class:`SimulatorControl`), so tests in another process can drive the network."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from types import TracebackType
from typing import Any

from modem.sim.device import Simulator
from modem.sim.transports import _Transport

# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)


class ControlServer:
    """JSON-lines control socket on loopback, so out-of-process tests can drive the network.

    One request per line, one reply line each, always with ``"ok"``.
    """

    def __init__(self, sim: Simulator, transport: _Transport, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.transport = transport
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> ControlServer:
        listener = socket.create_server((self.host, self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="sim-control", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Idempotent: closes the listener and every client, joins the threads."""
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            clients = dict(self._clients)
        for conn, thread in clients.items():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            thread.join(timeout=5)

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), name="sim-control-client", daemon=True)
            with self._lock:
                self._clients[conn] = thread
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rwb") as stream:
                for raw in stream:
                    if len(raw) > 1 << 20:
                        reply: dict[str, Any] = {"ok": False, "error": "line too long"}
                    else:
                        reply = self.handle_line(raw)
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()
        except OSError:
            pass
        finally:
            with self._lock:
                self._clients.pop(conn, None)

    def handle_line(self, raw: bytes) -> dict[str, Any]:
        """Answer one request line. Never raises."""
        try:
            request = json.loads(raw)
        except ValueError:
            return {"ok": False, "error": "not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected an object with "cmd"'}
        try:
            return self._dispatch(request)
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad request: {exc.__class__.__name__}: {exc}"}
        except TimeoutError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            logger.exception("simulator control: %s failed", request.get("cmd"))
            return {"ok": False, "error": f"internal error: {exc.__class__.__name__}"}

    def _dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req["cmd"]
        sim, network = self.sim, self.sim.network
        if cmd == "inject":
            if "pdu" in req:
                network.inject_pdu(_str(req["pdu"]))
            elif "data" in req:
                network.inject_data(_str(req["from"]), bytes.fromhex(_str(req["data"])), dcs=int(req["dcs"]))
            else:
                network.inject(_str(req["from"]), _str(req["text"]))
        elif cmd == "sent":
            return {"ok": True, "sent": [s.to_json() for s in network.sent()]}
        elif cmd == "wait_sent":
            timeout = min(float(req.get("timeout", 10.0)), 120.0)
            got = network.wait_for_sent(int(req["count"]), timeout)
            return {"ok": True, "sent": [s.to_json() for s in got]}
        elif cmd == "clear_sent":
            network.clear_sent()
        elif cmd == "fail_next_send":
            sim.fail_next_send(int(req["code"]), int(req.get("count", 1)), int(req.get("after", 0)))
        elif cmd == "fail_next_delete":
            sim.fail_next_delete(int(req["code"]), int(req.get("count", 1)))
        elif cmd == "latency":
            command = req.get("command")
            sim.set_latency(float(req["seconds"]), _str(command) if command is not None else None)
        elif cmd == "hang":
            sim.hang(bool(req.get("on", True)), clears=_str(req.get("clears", "manual")))
        elif cmd == "unplug":
            self.transport.unplug()
        elif cmd == "replug":
            self.transport.replug()
        elif cmd == "signal":
            sim.set_signal(int(req["csq"]))
        elif cmd == "registration":
            sim.set_registration(int(req["stat"]))
        elif cmd == "urc":
            sim.urc(_str(req["line"]), mid_reply=bool(req.get("mid_reply", False)))
        elif cmd == "delivery":
            number, status, delay = req.get("number"), req.get("status"), req.get("delay")
            network.set_delivery(
                _str(req["outcome"]),
                _str(number) if number is not None else None,
                status=int(status) if status is not None else None,
                delay=float(delay) if delay is not None else None,
            )
        elif cmd == "loopback":
            delay, lost = req.get("delay"), req.get("lost")
            network.set_loopback(
                delay=float(delay) if delay is not None else None, lost=bool(lost) if lost is not None else None
            )
        elif cmd == "ussd":
            answers, delay = req.get("answers"), req.get("delay")
            if answers is not None and not isinstance(answers, dict):
                raise TypeError("answers: expected an object")
            sim.set_ussd(
                answers={_str(k): _str(v) if v is not None else None for k, v in (answers or {}).items()},
                encoding=_opt_str(req.get("encoding")),
                delay=float(delay) if delay is not None else None,
                mode=_opt_str(req.get("mode")),
            )
        elif cmd == "call_outcome":
            number = req.get("number")
            network.set_call_outcome(_str(req["outcome"]), _str(number) if number is not None else None)
        elif cmd == "call_timing":
            sim.set_call_timing(**{k: float(req[k]) for k in ("setup", "ring", "no_answer") if req.get(k) is not None})
        elif cmd == "calls":
            return {"ok": True, "calls": [c.to_json() for c in network.calls()]}
        elif cmd == "wait_calls":
            timeout = min(float(req.get("timeout", 10.0)), 120.0)
            calls = network.wait_for_calls(int(req["count"]), timeout, ended=bool(req.get("ended", False)))
            return {"ok": True, "calls": [c.to_json() for c in calls]}
        elif cmd == "clear_calls":
            network.clear_calls()
        elif cmd in ("answer_call", "reject_call", "hangup_call"):
            done = {"answer_call": sim.answer_call, "reject_call": sim.reject_call, "hangup_call": sim.hangup_call}
            if not done[cmd]():
                state = "active" if cmd == "hangup_call" else "ringing"
                return {"ok": False, "error": f"no {state} call"}
        elif cmd == "stored":
            return {
                "ok": True,
                "stored": [{"index": s.index, "stat": s.stat, "pdu": s.pdu} for s in sim.stored()],
            }
        elif cmd == "status":
            return {
                "ok": True,
                "device": getattr(self.transport, "device", ""),
                "plugged": self.transport.plugged,
                "sim": sim.sim_state,
                "profile": sim.options.profile,
                "faults": list(sim.options.faults),
                "hung": sim.hung,
                "hang_clears": sim.hang_clears,
                "undelivered": network.undelivered(),
                "storage": list(sim.storage_fill()),
                "sent": len(network.sent()),
                "calls": len(network.calls()),
            }
        else:
            return {"ok": False, "error": f"unknown cmd {cmd[:40]!r}"}
        return {"ok": True}


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else _str(value)


class SimulatorControlError(Exception):
    """The control socket answered ``{"ok": false}``."""


class SimulatorControl:
    """Client of :class:`ControlServer` (for tests that run the simulator in another process)."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._stream = self._sock.makefile("rwb")

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command; returns the reply, raises :class:`SimulatorControlError` if not ok."""
        self._stream.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        self._stream.flush()
        line = self._stream.readline()
        if not line:
            raise SimulatorControlError("control socket closed")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise SimulatorControlError(str(reply.get("error")))
        return reply

    def inject(self, sender: str, text: str) -> None:
        self.request("inject", **{"from": sender, "text": text})

    def inject_pdu(self, pdu: str) -> None:
        self.request("inject", pdu=pdu)

    def inject_data(self, sender: str, data: bytes, dcs: int) -> None:
        """An SMS whose user data goes as-is under TP-DCS ``dcs`` (see Network.inject_data)."""
        self.request("inject", **{"from": sender, "data": data.hex(), "dcs": dcs})

    def fail_next_delete(self, code: int, count: int = 1) -> None:
        self.request("fail_next_delete", code=code, count=count)

    def sent(self) -> list[dict[str, Any]]:
        return list(self.request("sent")["sent"])

    def wait_sent(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return list(self.request("wait_sent", count=count, timeout=timeout)["sent"])

    def fail_next_send(self, code: int, count: int = 1, after: int = 0) -> None:
        self.request("fail_next_send", code=code, count=count, after=after)

    def latency(self, seconds: float, command: str | None = None) -> None:
        self.request("latency", seconds=seconds, **({"command": command} if command else {}))

    def hang(self, on: bool = True, *, clears: str = "manual") -> None:
        """``clears``: "manual", "radio", "usb" or "never" (see Simulator.hang)."""
        self.request("hang", on=on, clears=clears)

    def unplug(self) -> None:
        self.request("unplug")

    def replug(self) -> None:
        self.request("replug")

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def set_delivery(
        self, outcome: str, number: str | None = None, *, status: int | None = None, delay: float | None = None
    ) -> None:
        """Status reports for submissions to ``number`` (None: all others): "delivered",
        "delayed", "failed" or "never" (see Network.set_delivery)."""
        self.request("delivery", outcome=outcome, number=number, status=status, delay=delay)

    def set_loopback(self, *, delay: float | None = None, lost: bool | None = None) -> None:
        """An SMS to the own number comes back after ``delay`` seconds, or (``lost``) never."""
        self.request("loopback", delay=delay, lost=lost)

    def set_ussd(
        self,
        *,
        answers: dict[str, str | None] | None = None,
        encoding: str | None = None,
        delay: float | None = None,
        mode: str | None = None,
    ) -> None:
        """USSD answers per code (None forgets one), ``encoding`` "text" | "gsm7-hex" |
        "ucs2-hex", ``delay`` seconds, ``mode`` "answer" | "silent" | "timeout"."""
        self.request("ussd", answers=answers, encoding=encoding, delay=delay, mode=mode)

    def set_call_outcome(self, outcome: str, number: str | None = None) -> None:
        """What the phone at ``number`` (None: all others) does: "answer", "no-answer", "busy",
        "reject", "invalid" or "no-voice"."""
        self.request("call_outcome", outcome=outcome, number=number)

    def set_call_timing(
        self, *, setup: float | None = None, ring: float | None = None, no_answer: float | None = None
    ) -> None:
        self.request("call_timing", setup=setup, ring=ring, no_answer=no_answer)

    def calls(self) -> list[dict[str, Any]]:
        """Every call dialled (CallRecord.to_json), oldest first."""
        return list(self.request("calls")["calls"])

    def wait_calls(self, count: int, timeout: float = 10.0, *, ended: bool = False) -> list[dict[str, Any]]:
        return list(self.request("wait_calls", count=count, timeout=timeout, ended=ended)["calls"])

    def clear_calls(self) -> None:
        self.request("clear_calls")

    def answer_call(self) -> None:
        """The demo phone answers the ringing call; SimulatorControlError if none rings."""
        self.request("answer_call")

    def reject_call(self) -> None:
        """The demo phone declines the ringing call; SimulatorControlError if none rings."""
        self.request("reject_call")

    def hangup_call(self) -> None:
        """The demo phone hangs up the answered call; SimulatorControlError if none is active."""
        self.request("hangup_call")

    def close(self) -> None:
        self._stream.close()
        self._sock.close()

    def __enter__(self) -> SimulatorControl:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
