"""The SMS command parser and its reply texts (pure: table tests and hypothesis, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.model import Status
from gateway.rules.commands import (
    BAD_PIN,
    SMS_MAX,
    Command,
    ParseError,
    PinRejected,
    Verb,
    is_reply_safe,
    parse,
    parse_duration,
    render_check,
    render_done,
    render_help,
    render_nothing_to_ack,
    render_status,
)
from modem.pdu import count_parts, is_gsm7

NAMES = ["web1", "web2", "backup", "db", "db 1", "Mail Server", "café-paris"]
H, M, D = 3600.0, 60.0, 86400.0


def sends_as_one_sms(text: str) -> bool:
    return is_gsm7(text) and count_parts(text) == ("gsm7", 1) and len(text) <= SMS_MAX


# ---------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STATUS", Command(Verb.STATUS)),
        ("status web1", Command(Verb.STATUS, "web1")),
        ("Status all", Command(Verb.STATUS)),
        ("ACK", Command(Verb.ACK)),
        ("Ack web1.", Command(Verb.ACK, "web1")),
        ("ack WEB1", Command(Verb.ACK, "web1")),
        ("acknowledge backup", Command(Verb.ACK, "backup")),
        ("ON web2", Command(Verb.ON, "web2")),
        ("Off web2!", Command(Verb.OFF, "web2")),
        ("MUTE 2h", Command(Verb.MUTE, None, 2 * H)),
        ("mute all 30m", Command(Verb.MUTE, None, 30 * M)),
        ("Mute web1 1d", Command(Verb.MUTE, "web1", D)),
        ("mute web1 for 2 hours", Command(Verb.MUTE, "web1", 2 * H)),
        ("mute web1 1h30", Command(Verb.MUTE, "web1", 1.5 * H)),
        ("mute web1 1,5h", Command(Verb.MUTE, "web1", 1.5 * H)),
        ("mute web1 90 min", Command(Verb.MUTE, "web1", 90 * M)),
        ("UNMUTE", Command(Verb.UNMUTE)),
        ("unmute all", Command(Verb.UNMUTE)),
        ("Unmute backup", Command(Verb.UNMUTE, "backup")),
        ("PAUSE backup", Command(Verb.PAUSE, "backup")),
        ("resume backup", Command(Verb.RESUME, "backup")),
        ("HELP", Command(Verb.HELP)),
        ("help me please", Command(Verb.HELP)),
        ("?", Command(Verb.HELP)),
    ],
)
def test_it_parses_every_command(text: str, expected: Command) -> None:
    assert parse(text, names=NAMES, pin=None) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  status  ", Command(Verb.STATUS)),  # surrounding spaces
        ("Status.", Command(Verb.STATUS)),  # autocapitalised, full stop
        ("Ack web1!!", Command(Verb.ACK, "web1")),
        ("ack   web1", Command(Verb.ACK, "web1")),  # double space
        ("ack\u00a0web1", Command(Verb.ACK, "web1")),  # no-break space
        ("ack web1\u200b", Command(Verb.ACK, "web1")),  # zero-width space
        ("\ufeffSTATUS", Command(Verb.STATUS)),  # byte order mark
        ("OFF \u2018web2\u2019", Command(Verb.OFF, "web2")),  # smart single quotes
        ("OFF \u201cweb2\u201d.", Command(Verb.OFF, "web2")),  # smart double quotes
        ('OFF "Mail Server"', Command(Verb.OFF, "Mail Server")),
        ("\uff33\uff34\uff21\uff34\uff35\uff33", Command(Verb.STATUS)),  # full-width letters
        ("status\nweb1", Command(Verb.STATUS, "web1")),  # a line break
        ("Status?", Command(Verb.STATUS)),
        ("Status, web1", Command(Verb.STATUS, "web1")),
        ("Mute web1 2h.", Command(Verb.MUTE, "web1", 2 * H)),
        ("pause caf\u00e9-paris", Command(Verb.PAUSE, "café-paris")),
        ("pause cafe\u0301\u2013paris", Command(Verb.PAUSE, "café-paris")),  # combining accent, en dash
    ],
)
def test_it_tolerates_what_phone_keyboards_do(text: str, expected: Command) -> None:
    assert parse(text, names=NAMES, pin=None) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status db 1", Command(Verb.STATUS, "db 1")),  # the longest name that fits
        ("status db", Command(Verb.STATUS, "db")),
        ("mute db 1 2h", Command(Verb.MUTE, "db 1", 2 * H)),
        ("mute db 1h", Command(Verb.MUTE, "db", H)),
        ("mute db 1 h", Command(Verb.MUTE, "db", H)),  # "h" alone is no duration: "1 h" is
        ("mute mail server 10m", Command(Verb.MUTE, "Mail Server", 10 * M)),
        ("ack MAIL   SERVER", Command(Verb.ACK, "Mail Server")),
    ],
)
def test_it_matches_names_with_spaces_longest_first(text: str, expected: Command) -> None:
    assert parse(text, names=NAMES, pin=None) == expected


def test_it_returns_the_stored_spelling_of_a_name() -> None:
    long_name = "Backup of the " + "very " * 35 + "long server"
    assert len(long_name) <= 200
    assert parse(f"pause {long_name.upper()}", names=[long_name], pin=None) == Command(Verb.PAUSE, long_name)


@pytest.mark.parametrize(
    ("text", "code", "reply", "suggestion"),
    [
        ("ack web3", "unknown-name", "No check 'web3'. Did you mean web1? Send HELP.", "web1"),
        ("status bakup", "unknown-name", "No check 'bakup'. Did you mean backup? Send HELP.", "backup"),
        ("ack web1 please", "unknown-name", "No check 'web1 please'. Did you mean web1? Send HELP.", "web1"),
        ("pause zzz", "unknown-name", "No check 'zzz'. Send STATUS for the list.", None),
        ("ack all", "unknown-name", "No check 'all'. Send STATUS for the list.", None),
        ("STATSU", "unknown-command", "Unknown command 'STATSU'. Did you mean STATUS? Send HELP.", "STATUS"),
        ("Muet web1 2h", "unknown-command", "Unknown command 'Muet'. Did you mean MUTE? Send HELP.", "MUTE"),
        ("hi there", "unknown-command", "Unknown command 'hi'. Send HELP for the commands.", None),
        ("1234 STATUS", "unknown-command", "Unknown command '1234'. Send HELP for the commands.", None),
        ("ON", "missing-name", "ON needs a check name, e.g. ON web1.", None),
        ("resume", "missing-name", "RESUME needs a check name, e.g. RESUME web1.", None),
        ("mute web1", "missing-duration", "MUTE needs a duration, e.g. MUTE web1 2h or MUTE all 30m.", None),
        ("mute web1 0m", "bad-duration", "MUTE for 1m to 30d, e.g. MUTE all 2h.", None),
        ("mute 31d", "bad-duration", "MUTE for 1m to 30d, e.g. MUTE all 2h.", None),
        ("mute web3 2h", "unknown-name", "No check 'web3'. Did you mean web1? Send HELP.", "web1"),
        ("", "empty", "Empty message. Send HELP for the commands.", None),
        (" ... ", "empty", "Empty message. Send HELP for the commands.", None),
    ],
)
def test_it_explains_what_is_wrong(text: str, code: str, reply: str, suggestion: str | None) -> None:
    names = ["web1", "backup"]
    assert parse(text, names=names, pin=None) == ParseError(code, reply, suggestion)


def test_it_quotes_the_senders_text_safely_in_an_error() -> None:
    err = parse("ack " + "\U0001f600{x}" * 50, names=NAMES, pin=None)
    assert isinstance(err, ParseError)
    assert err.reply.startswith("No check '?(x)?(x)")
    assert sends_as_one_sms(err.reply)


# ---------------------------------------------------------------------------- PIN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234 STATUS", Command(Verb.STATUS)),
        ("1234 ack web1.", Command(Verb.ACK, "web1")),
        ("1234: status", Command(Verb.STATUS)),
        ("1234, status", Command(Verb.STATUS)),
        ("1234status", Command(Verb.STATUS)),
        (" \uff11\uff12\uff13\uff14 STATUS", Command(Verb.STATUS)),  # full-width digits
        ("1234", ParseError("empty", "Empty message. Send HELP for the commands.")),  # right PIN: answer
        ("STATUS", BAD_PIN),  # missing
        ("4321 STATUS", BAD_PIN),  # wrong
        ("12345 STATUS", BAD_PIN),  # the PIN as a prefix of other digits
        ("123 STATUS", BAD_PIN),
        ("STATUS 1234", BAD_PIN),  # not at the start
        ("", BAD_PIN),
        ("HELP", BAD_PIN),  # even HELP: a stranger learns nothing
        ("hello", BAD_PIN),
    ],
)
def test_it_requires_the_pin_first_when_one_is_set(text: str, expected: object) -> None:
    assert parse(text, names=NAMES, pin="1234") == expected


def test_a_wrong_pin_is_a_distinct_result_with_nothing_to_send() -> None:
    result = parse("0000 STATUS", names=NAMES, pin="1234")
    assert isinstance(result, PinRejected) and not isinstance(result, (Command, ParseError))
    assert not hasattr(result, "reply")


# ---------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 2 * H),
        ("30m", 30 * M),
        ("1d", D),
        ("1w", 7 * D),
        ("45s", 45.0),
        ("2 h", 2 * H),
        ("30 min", 30 * M),
        ("30mins", 30 * M),
        ("2 hours", 2 * H),
        ("1 day", D),
        ("1h30m", 90 * M),
        ("1h30", 90 * M),
        ("1.5h", 1.5 * H),
        ("1,5 h", 1.5 * H),
        ("2H", 2 * H),
        ("1h 30m", 90 * M),
        ("2", None),
        ("h", None),
        ("2x", None),
        ("", None),
        ("two hours", None),
        ("2h!", None),
        ("1m30", None),
        ("-2h", None),
    ],
)
def test_it_reads_durations_as_people_write_them(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


# ---------------------------------------------------------------------------- replies


def test_it_renders_status_counts_then_problems() -> None:
    rows: list[tuple[str, Status | str, float | None]] = [
        ("web1", Status.UP, 30.0),
        ("web2", "up", 40.0),
        ("web3", "up", 5.0),
        ("backup", "down", 2 * H + 5 * M),
    ]
    assert render_status(rows) == "3 up, 1 down: backup down 2 h 5 min"
    rows += [("db", "late", 20 * M), ("mail", "down", 3 * D), ("new1", "new", None), ("old", "paused", 9 * D)]
    assert (
        render_status(rows)
        == "3 up, 1 late, 2 down, 1 paused, 1 new: mail down 3 d, backup down 2 h 5 min, db late 20 min"
    )


@pytest.mark.parametrize(
    ("rows", "text"),
    [
        ([], "No checks yet."),
        ([("web1", "up", 3.0)], "1 up."),
        ([("web1", "up", 3.0), ("web2", "up", 4.0)], "All 2 up."),
        ([("a", "paused", None), ("b", "new", None)], "1 paused, 1 new."),
        ([("a", "down", None)], "1 down: a down"),
    ],
)
def test_it_renders_small_status_lists(rows: list[tuple[str, str, float | None]], text: str) -> None:
    assert render_status(rows) == text


def test_it_truncates_long_status_lists_with_n_more() -> None:
    rows = [(f"server-{i:03d}", "down", float(i * 60)) for i in range(200)]
    text = render_status(rows)
    assert text.startswith("200 down: server-199 down 3 h 19 min, server-198 down 3 h 18 min")
    assert text.endswith(" more")
    shown = text.count(" down ")
    assert text.endswith(f"+{200 - shown} more")
    assert sends_as_one_sms(text)


def test_it_renders_one_check() -> None:
    assert render_check("web1", "up", 200.0) == "web1: up, last ping 3 min ago"
    assert render_check("backup", Status.DOWN, 2 * H + 5 * M) == "backup: down, last ping 2 h 5 min ago"
    assert render_check("fresh", "new", None) == "fresh: new, never pinged"


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (Command(Verb.ON, "web1"), "ON web1: SMS alerts on"),
        (Command(Verb.OFF, "web1"), "OFF web1: SMS alerts off"),
        (Command(Verb.ACK, "web1"), "ACK web1: no more reminders until it recovers"),
        (Command(Verb.MUTE, "web1", 2 * H), "MUTE web1: no reminders for 2 h"),
        (Command(Verb.MUTE, None, 30 * M), "MUTE all: no reminders for 30 min"),
        (Command(Verb.UNMUTE, None), "UNMUTE all: reminders back on"),
        (Command(Verb.PAUSE, "web1"), "PAUSE web1: paused, no alerts until RESUME or its next ping"),
        (Command(Verb.RESUME, "web1"), "RESUME web1: watching again"),
    ],
)
def test_it_confirms_what_was_done(command: Command, text: str) -> None:
    assert render_done(command) == text


def test_help_fits_one_sms_and_never_shows_the_pin() -> None:
    for pin_required in (False, True):
        text = render_help(pin_required=pin_required)
        assert sends_as_one_sms(text)
        for verb in Verb:
            assert verb.value in text
    assert "PIN" in render_help(pin_required=True) and "PIN" not in render_help()
    assert sends_as_one_sms(render_nothing_to_ack())


def test_it_keeps_replies_in_the_gsm7_basic_table() -> None:
    name = "caf\u00e9 [prod] {eu} \u00e7a|b ~x^ \u20ac5 \u0141\u00f3d\u017a \u65e5\u672c \U0001f525"
    for text in (
        render_done(Command(Verb.OFF, name)),
        render_check(name, "up", 1.0),
        render_status([(name, "down", 1.0)]),
    ):
        assert sends_as_one_sms(text), text
        assert is_reply_safe(text)
    assert render_done(Command(Verb.OFF, name)) == "OFF caf\u00e9 (prod) (eu) ca/b -x' EUR5 Lodz ?? ?: SMS alerts off"


# ---------------------------------------------------------------------------- properties

names_st = hs.lists(hs.text(min_size=1, max_size=200), max_size=30)


@settings(max_examples=250, deadline=None)
@given(text=hs.text(max_size=300), names=names_st, pin=hs.none() | hs.from_regex(r"\d{4,8}", fullmatch=True))
def test_parse_never_raises_and_every_reply_fits_one_sms(text: str, names: list[str], pin: str | None) -> None:
    result = parse(text, names=names, pin=pin)
    assert isinstance(result, (Command, ParseError, PinRejected))
    if isinstance(result, Command):
        assert result.name is None or result.name in names
        assert (result.duration is not None) == (result.verb is Verb.MUTE)
    if isinstance(result, ParseError):
        assert sends_as_one_sms(result.reply), result.reply


@settings(max_examples=200, deadline=None)
@given(
    verb=hs.sampled_from([v for v in Verb if v is not Verb.HELP]),
    name=hs.sampled_from(["web1", "Mail Server", "db 1"]),
    noise=hs.sampled_from(["", ".", "!", "?", " ", "  .", "\u00a0"]),
    upper=hs.booleans(),
)
def test_it_parses_what_it_documents_whatever_the_case_and_noise(
    verb: Verb, name: str, noise: str, upper: bool
) -> None:
    word = verb.value if upper else verb.value.capitalize()
    timed = verb in (Verb.MUTE, Verb.MAINT)
    tail = " 2h" if timed else ""
    result = parse(f" {word} {name}{tail}{noise}", names=NAMES, pin=None)
    assert result == Command(verb, name, 2 * H if timed else None)


status_st = hs.sampled_from(list(Status))
age_st = hs.none() | hs.floats(min_value=0, max_value=400 * D, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(rows=hs.lists(hs.tuples(hs.text(max_size=200), status_st, age_st), max_size=300))
def test_status_replies_always_fit_one_sms(rows: list[tuple[str, Status, float | None]]) -> None:
    text = render_status(rows)
    assert sends_as_one_sms(text), text
    problems = sum(1 for _, s, _ in rows if s in (Status.DOWN, Status.LATE))
    if problems and text.endswith(" more"):
        assert int(text.rsplit("+", 1)[1].split()[0]) <= problems


@settings(max_examples=200, deadline=None)
@given(
    name=hs.text(max_size=200),
    status=status_st,
    age=age_st,
    verb=hs.sampled_from(list(Verb)),
    minutes=hs.integers(1, 30 * 24 * 60),
)
def test_confirmations_always_fit_one_sms(
    name: str, status: Status, age: float | None, verb: Verb, minutes: int
) -> None:
    assert sends_as_one_sms(render_check(name, status, age))
    assert sends_as_one_sms(render_done(Command(verb, name or None, minutes * 60.0)))
