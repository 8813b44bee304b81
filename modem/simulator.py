"""A simulated GSM modem that speaks AT commands, with a fake phone network behind it.

The code lives in :mod:`modem.sim` (one module per layer: network, command line, SMS,
device, transports, control socket, vendor profiles, command line interface); this module
keeps the names the gateway and the tests import, and ``python -m modem.simulator`` runs one
(:func:`cli_main`, also ``hbgw simulate-modem``).
"""

from __future__ import annotations

from modem.interface import mask_number
from modem.sim.cli import add_cli_arguments, cli_main
from modem.sim.control import ControlServer, SimulatorControl, SimulatorControlError
from modem.sim.device import Simulator
from modem.sim.machine import CTRL_Z, ESC, split_args
from modem.sim.network import CALL_OUTCOMES, DELIVERY_OUTCOMES, Network
from modem.sim.profiles import FAULTS, PROFILES, build_options
from modem.sim.records import CallRecord, SentSms, SimOptions, StoredSms
from modem.sim.transports import PtyModem, TcpModem
from modem.sim.ussd import USSD_ENCODINGS, USSD_MODES

__all__ = [
    "CALL_OUTCOMES",
    "CTRL_Z",
    "DELIVERY_OUTCOMES",
    "ESC",
    "FAULTS",
    "PROFILES",
    "USSD_ENCODINGS",
    "USSD_MODES",
    "CallRecord",
    "ControlServer",
    "Network",
    "PtyModem",
    "SentSms",
    "SimOptions",
    "Simulator",
    "SimulatorControl",
    "SimulatorControlError",
    "StoredSms",
    "TcpModem",
    "add_cli_arguments",
    "build_options",
    "cli_main",
    "mask_number",
    "split_args",
]

if __name__ == "__main__":
    import argparse
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    _parser = argparse.ArgumentParser(prog="python -m modem.simulator", description="simulated GSM modem")
    add_cli_arguments(_parser)
    sys.exit(cli_main(_parser.parse_args()))
