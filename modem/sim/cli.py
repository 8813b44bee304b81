"""``hbgw simulate-modem`` (and ``python -m modem.simulator``): one simulated modem on a
pty or TCP port until SIGTERM, with an optional control socket and a log of what it sent."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from modem.sim.control import ControlServer
from modem.sim.device import Simulator
from modem.sim.network import Network
from modem.sim.profiles import FAULTS, PROFILES, build_options, describe
from modem.sim.records import SentSms, SimOptions
from modem.sim.transports import PtyModem, TcpModem

# Named as before the split into modules: log filters select "modem.simulator".
logger = logging.getLogger(__name__)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class _ListProfiles(argparse.Action):
    """``--list-profiles``: print the profiles and faults and exit, like ``--version``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(describe(), flush=True)  # to stdout, like --help and --version
        parser.exit(0)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hbgw simulate-modem``."""
    parser.add_argument("--list-profiles", action=_ListProfiles, help="list the modem profiles and faults, then exit")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", metavar="LINK", help="serve on a pty; LINK becomes a symlink to it")
    where.add_argument("--tcp", metavar="HOST:PORT", type=_host_port, help="serve on TCP (port 0: any)")
    parser.add_argument("--pin", help="the SIM asks for this PIN")
    parser.add_argument(
        "--sim-busy",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="+CME ERROR: 14 for this long after power-up",
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="delay before every answer")
    parser.add_argument(
        "--storage-size", type=int, default=SimOptions.storage_size, metavar="N", help="message slots on the SIM"
    )
    parser.add_argument(
        "--control", metavar="HOST:PORT", type=_host_port, help="JSON-lines control socket (loopback only)"
    )
    parser.add_argument("--sent-log", metavar="FILE", help="append one JSON line per SMS sent")
    parser.add_argument(
        "--profile",
        default="generic",
        choices=list(PROFILES),
        metavar="NAME",
        help=f"the modem to behave like: {', '.join(PROFILES)} (default: generic; see --list-profiles)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=list(FAULTS),
        metavar="NAME",
        help=f"a fault to inject, repeatable: {', '.join(FAULTS)}",
    )
    parser.add_argument(
        "--flood-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between the profile's periodic reports (default: the profile's)",
    )


def cli_main(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT. Prints one ready line on stdout: the device (pty link or
    ``socket://host:port``), then `` control=host:port`` when a control socket was asked for."""
    if args.control is not None and args.control[0] not in ("127.0.0.1", "::1", "localhost"):
        logger.error("the control socket must listen on loopback, not %s", args.control[0])
        return 2
    if not 1 <= args.storage_size <= 255:
        logger.error("--storage-size must be 1 to 255, not %d", args.storage_size)
        return 2
    overrides: dict[str, Any] = {}
    if args.flood_interval is not None:
        if args.flood_interval < 0:
            logger.error("--flood-interval must not be negative")
            return 2
        overrides["flood_interval"] = args.flood_interval
    try:
        options = build_options(
            args.profile,
            args.fault,
            pin=args.pin,
            sim_busy_seconds=args.sim_busy,
            latency=args.latency,
            storage_size=args.storage_size,
            **overrides,
        )
    except ValueError as exc:
        logger.error("simulated modem: %s", exc)
        return 2
    network = Network(smsc=options.smsc)
    sim = Simulator(network, options)
    if args.sent_log:
        log_path = Path(args.sent_log)

        def append(sms: SentSms) -> None:
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(sms.to_json()) + "\n")

        network.on_sent(append)
    transport: PtyModem | TcpModem = PtyModem(sim, link=args.pty) if args.pty else TcpModem(sim, *args.tcp)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    control: ControlServer | None = None
    try:
        transport.start()
        ready = transport.device
        if args.control is not None:
            control = ControlServer(sim, transport, *args.control).start()
            ready += f" control={control.host}:{control.port}"
        print(ready, flush=True)
        logger.info("simulated modem (%s) on %s", options.profile, ready)
        while not stop.wait(0.5):
            pass
    except OSError as exc:
        logger.error("simulated modem: %s", exc)
        return 1
    finally:
        if control is not None:
            control.stop()
        transport.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
