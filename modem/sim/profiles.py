"""Simulator profiles: the modems people buy, and the ways they fail, as :class:`SimOptions`.

A *profile* (:data:`PROFILES`) is one modem as its vendor's AT manual and published transcripts
show it: identity strings, the storages ``AT+CPMS=?`` offers and where their numbering starts,
the lines it prints at power-up, its periodic reports and how to switch them off, how it
registers (``+CEREG`` with AcT 7 on LTE, ``+CREG`` alone on 2G), how it says the SMS
storage is full, whether it carries voice calls and how it shows USSD answers. A *fault*
(:data:`FAULTS`) is a way the field goes wrong, combinable with any profile.
:func:`build_options` puts one profile, its faults and explicit overrides together.

``generic`` is the simulator as it always was: no profile and no fault change nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modem.sim.records import SimOptions

# The generic storage-full report. 27.007 reports indicator changes as "+CIEV: <ind>,<value>"
# with <ind> the position of "smsfull" in +CIND's list; modules that name the indicator instead
# (Ai-Thinker A6/A9 transcripts) print this, which a host can read without asking +CIND first.
GENERIC_FULL = '+CIEV: "SMSFULL",1'
GENERIC_FREE = '+CIEV: "SMSFULL",0'

# +CMS ERROR texts (+CMEE=2) as the vendors' manuals print them, where they differ from 27.005's.
_QUECTEL_CMS = ((311, "SIM PIN necessary"), (331, "No network"), (500, "Unknown"), (322, "Memory full"))
_SIMCOM_CMS = ((311, "SIM PIN necessary"), (331, "no network"), (500, "unknown"))


@dataclass(frozen=True)
class Profile:
    """One modem model: what it is, and the :class:`SimOptions` values that make it so."""

    description: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Fault:
    """One way a modem goes wrong: what it is, and how it changes a profile's options."""

    description: str
    apply: Callable[[SimOptions], dict[str, Any]]


PROFILES: dict[str, Profile] = {
    "generic": Profile("the simulator's own modem, 27.007/27.005 by the letter (the default)", {}),
    "huawei-e3372": Profile(
        "Huawei E3372 LTE stick in stick firmware: ^RSSI/^HCSQ/^MODE/^SRVST/^BOOT reports until AT^CURC=0",
        {
            "manufacturer": "huawei",
            "model": "E3372",
            "revision": "22.200.15.00.00",
            "act": 7,
            "first_index": 0,
            "storages": ("SM", "ME"),
            "flood_urcs": (
                "^RSSI: {rssi}",
                '^HCSQ: "LTE",{hcsq_rssi},{hcsq_rsrp},{hcsq_sinr},{hcsq_rsrq}',
                "^MODE: {sysmode}",
                "^SRVST: {srvst}",
                "^BOOT: 20952548,0,0,0,87",
            ),
            "flood_interval": 2.0,
            "flood_between_commands": True,
            "urc_control": "^CURC",
            "storage_full_urc": "^SMMEMFULL: {mem}",
            # Stick firmware has no voice; USSD answers come as packed GSM-7 in hex.
            "voice": False,
            "ussd_encoding": "gsm7-hex",
        },
    ),
    "sim7600": Profile(
        "SIMCom SIM7600 LTE Cat-1/4 module: RDY, +CPIN: READY, SMS DONE, PB DONE (again after AT+CFUN=1)",
        {
            "manufacturer": "SIMCOM INCORPORATED",
            "model": "SIMCOM_SIM7600E-H",
            "revision": "LE20B04SIM7600M22",
            "act": 7,
            "first_index": 0,
            "storages": ("SM", "ME", "MT"),
            "cms_texts": _SIMCOM_CMS,
            "boot_urcs": ("RDY",),
            "ready_urcs": ("+CPIN: READY", "SMS DONE", "PB DONE"),
            "storage_full_urc": GENERIC_FULL,
            "storage_free_urc": GENERIC_FREE,
        },
    ),
    "ec25": Profile(
        'Quectel EC25 LTE module: RDY, +QIND: SMS DONE/PB DONE, +QIND: "csq" and "smsfull" reports (+QINDCFG)',
        {
            "manufacturer": "Quectel",
            "model": "EC25",
            "revision": "EC25EFAR06A06M4G",
            "act": 7,
            "first_index": 0,
            "storages": ("SM", "ME", "MT"),
            "cms_texts": _QUECTEL_CMS,
            "boot_urcs": ("RDY", "+CFUN: {cfun}"),
            "ready_urcs": ("+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"),
            "flood_urcs": ('+QIND: "csq",{rssi},99',),
            "flood_interval": 5.0,
            "urc_control": "+QINDCFG",
            "storage_full_urc": '+QIND: "smsfull",{mem}',
        },
    ),
    "sim800": Profile(
        "SIMCom SIM800 2G module: RDY, +CFUN: 1, +CPIN: READY, Call Ready, SMS Ready; +CREG only, no +CEREG",
        {
            "manufacturer": "SIMCOM_Ltd",
            "model": "SIMCOM_SIM800L",
            "revision": "Revision:1418B04SIM800L24",
            "act": None,
            "has_cereg": False,
            "first_index": 1,
            "storages": ("SM", "ME", "MT"),
            "cms_texts": _SIMCOM_CMS,
            "boot_urcs": ("RDY", "+CFUN: {cfun}"),
            "ready_urcs": ("+CPIN: READY", "Call Ready", "SMS Ready"),
            "storage_full_urc": GENERIC_FULL,
            "storage_free_urc": GENERIC_FREE,
        },
    ),
}


def _lte(o: SimOptions) -> bool:
    return o.has_cereg


def _sms_only(o: SimOptions) -> dict[str, Any]:
    # 27.007 stat 6 "registered for SMS only" belongs to E-UTRAN; the gateway reads it from
    # +CEREG. A 2G module has only +CREG to say it in.
    if _lte(o):
        return {"registration": 0, "eps_registration": 6}
    return {"registration": 6}


def _lte_no_sms(o: SimOptions) -> dict[str, Any]:
    # Attached to LTE only (no CS fallback, no SMS over IMS): the network refuses submissions.
    # A 2G module cannot show the LTE side, so its host sees +CREG not registered.
    return {"registration": 0, "eps_registration": 1, "act": 7 if _lte(o) else o.act, "submit_error": 500}


def _storage_full(o: SimOptions) -> dict[str, Any]:
    changes: dict[str, Any] = {"full_at_boot": True}
    if o.storage_full_urc is None:
        changes.update(storage_full_urc=GENERIC_FULL, storage_free_urc=GENERIC_FREE)
    return changes


FAULTS: dict[str, Fault] = {
    "radio-off": Fault("the radio is off at power-up (+CFUN: 4)", lambda o: {"radio_at_boot": 4}),
    "denied": Fault("registration denied (stat 3)", lambda o: {"registration": 3, "eps_registration": 3}),
    "sms-only": Fault("registered for SMS only (stat 6, +CEREG on LTE, +CREG on 2G)", _sms_only),
    "lte-no-sms": Fault("registered on LTE only; AT+CMGS ends in +CMS ERROR: 500", _lte_no_sms),
    "hang-radio": Fault(
        "hangs at the first AT+CMGS; only a radio cycle clears it", lambda o: {"hang_on_send": "radio"}
    ),
    "hang-usb": Fault(
        "hangs at the first AT+CMGS; only a power cycle (USB replug) clears it", lambda o: {"hang_on_send": "usb"}
    ),
    "hang-never": Fault("hangs at the first AT+CMGS for good", lambda o: {"hang_on_send": "never"}),
    "storage-full": Fault(
        "the SIM storage is full of read messages; new SMS wait in the network, with the storage-full report",
        _storage_full,
    ),
    "junk-slots": Fault("three storage slots hold undecodable PDUs at power-up", lambda o: {"junk_slots": 3}),
    "no-voice": Fault(
        "a data-only module (Cat-M/NB-IoT, data-only LTE): ATD<number>; answers +CME ERROR: 4",
        lambda o: {"voice": False},
    ),
    "no-own-number": Fault(
        "the SIM does not know its own number: AT+CNUM answers ERROR", lambda o: {"own_number": None}
    ),
    "no-delivery-reports": Fault(
        "the network never sends status reports (TP-SRR ignored)", lambda o: {"delivery": "never"}
    ),
    "ussd-silent": Fault("the network never answers USSD requests", lambda o: {"ussd_mode": "silent"}),
}

# Faults that say different things about the same part: only one of each group at a time.
_EXCLUSIVE = (("denied", "sms-only", "lte-no-sms"), ("hang-radio", "hang-usb", "hang-never"))


def build_options(profile: str = "generic", faults: Sequence[str] = (), **overrides: Any) -> SimOptions:
    """The :class:`SimOptions` of ``profile`` with ``faults`` applied, then ``overrides``.

    Raises ``ValueError`` naming the bad profile, fault, combination or option.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown modem profile {profile!r} (known: {', '.join(PROFILES)})")
    unique = list(dict.fromkeys(faults))
    for name in unique:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
    for group in _EXCLUSIVE:
        clash = [name for name in unique if name in group]
        if len(clash) > 1:
            raise ValueError(f"faults {' and '.join(clash)} cannot be combined")
    known = {f.name for f in dataclasses.fields(SimOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown simulator option(s): {', '.join(unknown)}")
    options = SimOptions(**dict(PROFILES[profile].options), profile=profile, faults=tuple(unique))
    for name in unique:
        options = dataclasses.replace(options, **FAULTS[name].apply(options))
    return dataclasses.replace(options, **overrides)


def describe() -> str:
    """The profiles and faults, one line each (``hbgw simulate-modem --list-profiles``)."""
    width = max(map(len, [*PROFILES, *FAULTS]))
    lines = ["profiles (--profile):"]
    lines += [f"  {name:<{width}}  {p.description}" for name, p in PROFILES.items()]
    lines.append("faults (--fault, repeatable):")
    lines += [f"  {name:<{width}}  {f.description}" for name, f in FAULTS.items()]
    return "\n".join(lines)
