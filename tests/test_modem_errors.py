"""+CME / +CMS ERROR codes: each one seen in the field is retry, permanent or "fix the setup",
with one sentence the owner understands (issue 17).

Sources: 3GPP TS 27.007 §9.2 (CME), TS 27.005 §3.2.5 (CMS: 0-127 from 24.011, 128-255 from
23.040 TP-FCS, 300-340 and 500 from 27.005, 512+ vendor), smstools3's tables
(../shared/corpus/smstools3_error_codes_and_timeouts.json), ../shared/modem-field-notes.md.
"""

from __future__ import annotations

import pytest

from gateway.runtime.channels import ChannelError
from modem.at import CME_ERRORS, CMS_ERRORS, FinalKind, FinalResult, error_for
from modem.errors import (
    CME_ADVICE,
    CMS_ADVICE,
    CmeError,
    CmsError,
    ErrorKind,
    ModemError,
    cme_advice,
    cms_advice,
)
from modem.pdu import is_gsm7

R, P, S = ErrorKind.RETRY, ErrorKind.PERMANENT, ErrorKind.SETUP

FIELD_CME = [1, 3, 4, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24, 27, 28, 29, 30, 31, 32, 100, 262, 263]
FIELD_CMS = [1, 8, 10, 21, 27, 28, 29, 30, 38, 41, 42, 47, 50, 69, 81, 96, 97, 111, 127]
FIELD_CMS += [*range(300, 333), 500, *range(512, 548)]


@pytest.mark.parametrize("code", FIELD_CME)
def test_it_gives_every_field_cme_code_a_kind_and_a_hint(code: int) -> None:
    """Fails on the code before issue 17 (no kind, no hint)."""
    e = CmeError(code, "x", permanent=False)
    assert e.kind in (R, P, S) and e.kind in ("retry", "permanent", "setup")
    assert_owner_sentence(e.hint)


@pytest.mark.parametrize("code", FIELD_CMS)
def test_it_gives_every_field_cms_code_a_kind_and_a_hint(code: int) -> None:
    """Fails on the code before issue 17 (no kind, no hint)."""
    e = CmsError(code, "x", permanent=False)
    assert e.kind in (R, P, S) and e.kind in ("retry", "permanent", "setup")
    assert_owner_sentence(e.hint)


def assert_owner_sentence(hint: str) -> None:
    # One sentence that fits an SMS or a log line, in GSM-7 so it can be texted as it is.
    assert hint and not hint.endswith(".")
    assert len(hint) <= 160 and is_gsm7(hint), hint


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (CmsError(330, "SMSC address unknown"), S, "SMS centre unknown: set [modem] smsc"),
        (CmsError(500, "unknown error"), R, "on LTE-only networks: this network may not carry SMS for this SIM/modem"),
        (CmsError(1, "unassigned (unallocated) number"), P, "check the number"),
        (CmsError(8, "operator determined barring"), S, "ask the operator"),
        (CmsError(50, "requested facility not subscribed"), S, "SMS subscription"),
        (CmsError(69, "requested facility not implemented"), S, "LTE"),
        (CmsError(38, "network out of order"), R, "retried"),
        (CmsError(42, "congestion"), R, "congested"),
        (CmsError(304, "invalid PDU mode parameter"), P, "check the number"),
        (CmsError(311, "SIM PIN required"), S, "[modem] pin"),
        (CmsError(314, "SIM busy"), R, "SIM is still busy"),
        (CmsError(321, "invalid memory index"), P, "empty storage"),
        (CmsError(322, "memory full"), S, "storage is full"),
        (CmsError(331, "no network service"), R, "antenna"),
        (CmsError(513, "lower layer failure"), R, "radio link"),
        (CmeError(10, "SIM not inserted"), S, "insert the SIM"),
        (CmeError(11, "SIM PIN required"), S, "set [modem] pin"),
        (CmeError(12, "SIM PUK required"), S, "PUK"),
        (CmeError(16, "incorrect password"), S, "correct [modem] pin"),
        (CmeError(14, "SIM busy"), R, "retried"),
        (CmeError(30, "no network service"), R, "antenna"),
        (CmeError(32, "emergency calls only"), S, "emergency calls only"),
        (CmeError(262, "SIM blocked"), S, "PUK"),
    ],
)
def test_it_tells_the_owner_what_to_do(error: ModemError, kind: ErrorKind, words: str) -> None:
    """Fails on the code before issue 17 (no kind, no hint)."""
    assert isinstance(error, (CmeError, CmsError))
    assert error.kind is kind
    assert words in error.hint


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (2, R, "cause 2"),  # 0-127: network causes of 24.011, usually passing
        (120, R, "cause 120"),
        (150, P, "format"),  # 128-191: the SMS centre refused the PDU's fields: it would again
        (180, P, "format"),
        (200, R, "cause 200"),  # 192-255: SMS centre / SIM failures
        (254, R, "cause 254"),
        (306, R, "SMS error 306"),  # 27.005 reserved
        (319, R, "SMS error 319"),
        (420, R, "SMS error 420"),
        (516, R, "vendor-specific modem error 516"),  # vendor range: retried unless known
        (547, R, "vendor-specific"),
        (3517, R, "vendor-specific"),
    ],
)
def test_it_classifies_unknown_cms_codes_by_their_range(code: int, kind: ErrorKind, words: str) -> None:
    assert code not in CMS_ADVICE
    advice = cms_advice(code)
    assert advice.kind is kind and words in advice.hint
    assert_owner_sentence(advice.hint)


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (8, R, "equipment error 8"),
        (60, R, "equipment error 60"),
        (120, R, "data service (cause 120)"),
        (300, R, "equipment error 300"),
        (600, R, "vendor-specific modem error 600"),
        (3517, R, "vendor-specific"),  # Quectel M26 at boot
    ],
)
def test_it_classifies_unknown_cme_codes_by_their_range(code: int, kind: ErrorKind, words: str) -> None:
    assert code not in CME_ADVICE
    advice = cme_advice(code)
    assert advice.kind is kind and words in advice.hint
    assert_owner_sentence(advice.hint)


def test_it_derives_permanent_from_the_kind_when_the_caller_leaves_it_out() -> None:
    """Fails on the code before issue 17 (``permanent`` was required)."""
    assert CmsError(330, "SMSC address unknown").permanent is True  # setup: retrying cannot help
    assert CmsError(1, "unassigned").permanent is True
    assert CmsError(500, "unknown error").permanent is False
    assert CmeError(14, "SIM busy").permanent is False


@pytest.mark.parametrize("given", [True, False])
def test_it_keeps_the_permanent_flag_the_caller_gives(given: bool) -> None:
    assert CmsError(330, "SMSC address unknown", permanent=given).permanent is given
    assert CmeError(14, "SIM busy", permanent=given).permanent is given


@pytest.mark.parametrize("code", sorted(CME_ERRORS))
def test_the_driver_takes_a_cme_codes_permanence_from_its_advice(code: int) -> None:
    e = error_for(FinalResult(FinalKind.CME, code, str(code)), "AT+CMGS")
    assert isinstance(e, CmeError)
    assert (str(e), e.code) == (f"+CME ERROR {code}: {CME_ERRORS[code]} (AT+CMGS)", code)
    assert e.permanent is (e.kind is not R)
    assert e.hint and e.kind in (R, P, S)
    assert ChannelError(str(e), permanent=e.permanent).args == (str(e),)  # what the SMS channel passes on


@pytest.mark.parametrize("code", sorted(CMS_ERRORS))
def test_the_driver_takes_a_cms_codes_permanence_from_its_advice(code: int) -> None:
    e = error_for(FinalResult(FinalKind.CMS, code, str(code)), "AT+CMGS")
    assert isinstance(e, CmsError)
    assert (str(e), e.code) == (f"+CMS ERROR {code}: {CMS_ERRORS[code]} (AT+CMGS)", code)
    assert e.permanent is (e.kind is not R)
    assert e.hint and e.kind in (R, P, S)


def test_it_covers_every_code_the_driver_names() -> None:
    """Every code the AT driver has a text for has its own advice, not a range default."""
    assert set(CME_ERRORS) <= set(CME_ADVICE)
    assert set(CMS_ERRORS) <= set(CMS_ADVICE)
