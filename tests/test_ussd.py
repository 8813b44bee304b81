"""USSD: the ``+CUSD`` reader and the three ways modems show the answer (pure tables), then
AtModem asking the simulated network over a real pty: text, packed GSM-7 hex (Huawei), UCS-2
hex, an unknown code, a network timeout and a network that never answers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modem.errors import ModemError, ModemTimeout
from modem.pdu import encode_gsm7, pack_septets
from modem.simulator import SimOptions, build_options
from modem.ussd import UssdReply, decode_ussd, is_ucs2_dcs, parse_cusd
from tests.support.aio import run
from tests.test_at_modem import Rig, opened

BALANCE = "Balance: 12.34 EUR. Valid until 2027-03-01."
RUBLES = "\u0411\u0430\u043b\u0430\u043d\u0441: 100 \u0440\u0443\u0431."  # Cyrillic: UCS-2 only


def packed(text: str) -> str:
    return pack_septets(encode_gsm7(text)).hex().upper()


def zero_padded(text: str) -> str:
    data = bytearray(pack_septets(encode_gsm7(text)))
    data[-1] &= 0x01  # the last octet's top 7 bits are the padding
    return data.hex().upper()


def ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


# ------------------------------------------------------------------------------ pure


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (f'+CUSD: 0,"{BALANCE}",15', UssdReply(0, BALANCE, 15)),
        ('+CUSD: 1,"1 Balance 2 Bundles",15', UssdReply(1, "1 Balance 2 Bundles", 15)),
        ('+CUSD:0,"AA180C3602",15', UssdReply(0, "AA180C3602", 15)),
        ('+CUSD: 0,"004100420043",72', UssdReply(0, "004100420043", 72)),
        ('+CUSD: 2,"Goodbye"', UssdReply(2, "Goodbye", None)),
        ('+CUSD: 0,"a, b, c",15', UssdReply(0, "a, b, c", 15)),  # commas inside the text
        ("+CUSD: 4", UssdReply(4)),
        ("+CUSD: 5", UssdReply(5)),
        ("+CUSD: 2", UssdReply(2)),
        ("+CUSD: (0-2)", None),  # the test command's answer
        ("+CUSD: x", None),
        ("+CREG: 1", None),
    ],
)
def test_it_reads_cusd_lines(line: str, reply: UssdReply | None) -> None:
    assert parse_cusd(line) == reply


@pytest.mark.parametrize(
    ("raw", "dcs", "text"),
    [
        (BALANCE, 15, BALANCE),  # text (Quectel, SIMCom)
        (packed(BALANCE), 15, BALANCE),  # packed GSM-7 hex (Huawei)
        (packed("Saldo: 5 EUR"), 15, "Saldo: 5 EUR"),
        (packed("Saldo 5"), 15, "Saldo 5"),  # 7 septets: the 7 spare bits hold CR (23.038)
        (zero_padded("Saldo 5"), 15, "Saldo 5"),  # ... or zeros (Huawei): no phantom "@"
        (packed("Preis: 5€ [1]"), 15, "Preis: 5€ [1]"),  # extension table characters
        (ucs2("Guthaben: 5,00 €"), 72, "Guthaben: 5,00 €"),
        (ucs2(RUBLES), 72, RUBLES),
        (ucs2("余额 5 元"), 72, "余额 5 元"),
        (ucs2("Balance 5"), 15, "Balance 5"),  # a modem in +CSCS="UCS2" under dcs 15
        (ucs2("Balance 5"), None, "Balance 5"),
        ("Balance 5 EUR", 72, "Balance 5 EUR"),  # dcs 72 but plain text: taken as it came
        ("100", 15, "100"),  # odd length: not hex
        ("", 15, ""),
        ("ZZZZ", 15, "ZZZZ"),
    ],
)
def test_it_decodes_every_answer_encoding(raw: str, dcs: int | None, text: str) -> None:
    assert decode_ussd(raw, dcs) == text


@pytest.mark.parametrize(
    ("dcs", "ucs2_dcs"),
    [(72, True), (0x11, True), (0x98, True), (0x4C, False), (15, False), (0, False), (0x44, False), (None, False)],
)
def test_it_knows_the_ucs2_data_coding_schemes(dcs: int | None, ucs2_dcs: bool) -> None:
    assert is_ucs2_dcs(dcs) is ucs2_dcs


def test_a_reply_decodes_its_text() -> None:
    assert UssdReply(0, packed("OK 1"), 15).decoded == "OK 1"
    assert UssdReply(4).decoded is None


# ------------------------------------------------------------------------------ over a real pty


@pytest.mark.parametrize(
    ("options", "code", "answer"),
    [
        (SimOptions(), "*100#", BALANCE),
        (SimOptions(ussd_encoding="gsm7-hex"), "*100#", BALANCE),
        (build_options("huawei-e3372"), "*100#", BALANCE),
        (SimOptions(ussd_encoding="ucs2-hex", ussd_answers={"*101#": "Guthaben: 5,00 €"}), "*101#", "Guthaben: 5,00 €"),
        # Not GSM-7: the text firmware falls back to UCS-2 hex, dcs 72.
        (SimOptions(ussd_answers={"*102#": RUBLES}), "*102#", RUBLES),
    ],
    ids=["text", "gsm7-hex", "huawei-e3372", "ucs2-hex", "text-falls-back-to-ucs2"],
)
def test_it_returns_the_networks_answer(
    make_pty_rig: Callable[..., Rig], options: SimOptions, code: str, answer: str
) -> None:
    rig = make_pty_rig(options)

    async def main() -> str:
        async with opened(rig.modem()) as modem:
            return await modem.ussd(code, timeout=5)

    assert run(main()) == answer
    assert rig.sim.ussd_requests == [code]


def test_it_refuses_an_unknown_code_and_a_network_timeout_with_clear_errors(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions())

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            with pytest.raises(ModemError, match="does not support this USSD code") as unknown:
                await modem.ussd("*999#", timeout=5)
            assert unknown.value.permanent
            rig.sim.set_ussd(mode="timeout")
            with pytest.raises(ModemError, match="did not answer the USSD request in time") as late:
                await modem.ussd("*100#", timeout=5)
            assert not late.value.permanent
            with pytest.raises(ModemError, match="not a USSD code"):
                await modem.ussd('*100#",15;D+1', timeout=5)

    run(main())


def test_it_gives_up_on_a_silent_network_and_the_next_request_works(make_pty_rig: Callable[..., Rig]) -> None:
    rig = make_pty_rig(SimOptions(ussd_mode="silent"))

    async def main() -> None:
        async with opened(rig.modem()) as modem:
            with pytest.raises(ModemTimeout, match="no USSD answer"):
                await modem.ussd("*100#", timeout=0.3)
            assert "AT+CUSD=2" in rig.sim.commands  # the session was ended
            rig.sim.set_ussd(mode="answer")
            assert await modem.ussd("*100#", timeout=5) == BALANCE

    run(main())


def test_it_tells_the_own_number_or_none(make_pty_rig: Callable[..., Rig]) -> None:
    known, unknown = make_pty_rig(SimOptions()), make_pty_rig(SimOptions(own_number=None))

    async def main(rig: Rig) -> str | None:
        async with opened(rig.modem()) as modem:
            return await modem.own_number()

    assert run(main(known)) == "+15550009999"
    assert run(main(unknown)) is None
