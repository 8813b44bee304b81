"""SMS commands from the owner's phone: the parser and the reply texts.

Pure: no I/O, no clock. The inbound-SMS handler authenticates the sender (allow-list), calls
:func:`parse` with the current check names and the PIN, runs the :class:`Command` through the
service, and sends the text one of the ``render_*`` functions gives.

Grammar (case-insensitive; ``[x]`` optional; the full reference is the README)::

    [PIN] STATUS [name]         [PIN] ACK [name]          [PIN] HELP
    [PIN] ON name               [PIN] OFF name
    [PIN] MUTE [name] duration  [PIN] UNMUTE [name]
    [PIN] PAUSE name            [PIN] RESUME name
    [PIN] MAINT name duration   (a maintenance window from now)

``MUTE``, ``UNMUTE``, ``ACK`` and ``MAINT`` take ``tag:NAME`` for every check with that tag
(``MUTE tag:office 2h``); ``MAINT`` also takes ``all``.

- Tolerant of what phone keyboards add: an autocapitalised first letter, surrounding spaces,
  a trailing ``.``/``!``/``?``, smart quotes and dashes, non-breaking and zero-width spaces,
  full-width letters, quotes around a name.
- ``name`` is matched case-insensitively against the existing check names; names may contain
  spaces, and the longest known name that fits wins. A near miss gets "Did you mean ...?".
- ``duration``: ``30m``, ``2h``, ``1d``, ``1h30m``, ``2 hours``, ``1.5h``, optionally after
  ``for``; from 1 minute to 30 days. ``MUTE``/``UNMUTE``/``STATUS`` also take ``all``.
- With a PIN configured, a message must start with it (``1234 STATUS``); otherwise
  :func:`parse` returns :data:`BAD_PIN` and the caller must not answer at all, so a stranger
  learns nothing, not even that this number is a gateway.

Replies use only GSM-7 basic-table characters (one septet each; anything else in a name is
replaced) and always fit one 160-character SMS: long names are shortened with "...", long
lists end with "+N more". One SMS, never a multipart one, is a deliberate choice: a reply must
arrive whole even on networks that drop concatenated parts, and costs one message.
"""

from __future__ import annotations

import difflib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.model import Status
from gateway.rules import durations
from gateway.rules.durations import humanize

SMS_MAX = 160
NAME_SHOWN = 30  # characters of a check name shown in a reply before "..."
NAME_MATCH_MAX = 220  # characters of an unknown name compared for "did you mean" (names: <= 200)
MUTE_MIN = 60.0
MUTE_MAX = 30 * 86400.0


class Verb(StrEnum):
    STATUS = "STATUS"
    ACK = "ACK"
    ON = "ON"
    OFF = "OFF"
    MUTE = "MUTE"
    UNMUTE = "UNMUTE"
    PAUSE = "PAUSE"
    RESUME = "RESUME"
    MAINT = "MAINT"
    HELP = "HELP"


_NAME_REQUIRED = frozenset((Verb.ON, Verb.OFF, Verb.PAUSE, Verb.RESUME))
_TAKES_ALL = frozenset((Verb.STATUS, Verb.MUTE, Verb.UNMUTE, Verb.MAINT))
_TAKES_TAG = frozenset((Verb.ACK, Verb.MUTE, Verb.UNMUTE, Verb.MAINT))
_TIMED = frozenset((Verb.MUTE, Verb.MAINT))
_ALIASES = {"ACKNOWLEDGE": Verb.ACK, "MAINTENANCE": Verb.MAINT}
TAG_PREFIX = "tag:"


@dataclass(frozen=True)
class Command:
    """A parsed command. ``name`` is the check's stored name (None: no name given, i.e. all
    checks, or for ACK the most recent alert); ``duration`` is seconds, MUTE and MAINT only;
    ``tag``: every check with that tag instead of one name (``MUTE tag:office 2h``)."""

    verb: Verb
    name: str | None = None
    duration: float | None = None
    tag: str | None = None


@dataclass(frozen=True)
class ParseError:
    """A message from an authenticated sender that is not a valid command.

    ``code`` is for logs and tests ("empty", "unknown-command", "missing-name", "unknown-name",
    "missing-duration", "bad-duration", "unknown-tag"); ``reply`` is the SMS to send back; ``suggestion`` the
    verb or check name a near miss probably meant.
    """

    code: str
    reply: str
    suggestion: str | None = None


@dataclass(frozen=True)
class PinRejected:
    """A PIN is required and the message does not start with it: send no reply at all."""


BAD_PIN = PinRejected()

# ------------------------------------------------------------------------------ text cleaning

# Characters a phone keyboard substitutes for plain ones.
_PUNCT = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2039": '"',
        "\u203a": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
    }
)
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad]")  # zero-width, BOM, soft hyphen
_EDGE = " \t\n\r.,;:!?'\"()"  # trimmed from the ends of the message, the verb and names


def _normalize(text: str) -> str:
    """NFKC (full-width letters, NBSP), plain quotes and dashes, no invisible characters,
    whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_PUNCT)
    text = _INVISIBLE.sub("", text)
    return " ".join(text.split())


def _key(name: str) -> str:
    """How a name is compared: normalized, trimmed of edge punctuation, casefolded."""
    return _normalize(name).strip(_EDGE).casefold()


# ------------------------------------------------------------------------------ durations


def parse_duration(text: str) -> float | None:
    """Seconds in ``text`` ("2h", "30 min", "1h30m", "1h30", "1,5 h"), or None if it is not a
    duration. A bare number is not one (is "MUTE 2" minutes or hours?). The same parser as the
    config file, the command line and the page (:func:`gateway.rules.durations.parse_duration`)."""
    try:
        return durations.parse_duration(text)
    except ValueError:
        return None


def _duration_splits(words: list[str]) -> list[tuple[list[str], float]]:
    """Every way the last one to three words (after an optional "for") read as a duration:
    (words before, seconds), the shortest duration (so the longest name) first."""
    out = []
    for n in (1, 2, 3):
        if len(words) < n:
            break
        seconds = parse_duration(" ".join(words[-n:]))
        if seconds is not None:
            rest = words[:-n]
            if rest and rest[-1].casefold() == "for":
                rest = rest[:-1]
            out.append((rest, seconds))
    return out


# ------------------------------------------------------------------------------ parsing


_PIN_PREFIX = re.compile(r"(\d+)[\s.,:;#*-]*")


def parse(
    text: str, *, names: Sequence[str], pin: str | None, tags: Sequence[str] = ()
) -> Command | ParseError | PinRejected:
    """Parse one SMS ``text`` against the existing check ``names`` (and ``tags``, the tags the
    checks carry, for ``tag:NAME``).

    Never raises. With ``pin`` set, the text must start with it (else :data:`BAD_PIN`: do not
    reply). Returns a :class:`Command` whose ``name`` is one of ``names``, or a
    :class:`ParseError` whose ``reply`` tells the sender what to fix.
    """
    body = _normalize(text)
    if pin is not None:
        m = _PIN_PREFIX.match(body)
        if m is None or not hmac.compare_digest(m.group(1).encode(), pin.encode()):
            return BAD_PIN
        body = body[m.end() :]
    if body.strip() == "?":
        return Command(Verb.HELP)
    body = body.strip(_EDGE)
    if not body:
        return ParseError("empty", "Empty message. Send HELP for the commands.")
    first, _, rest = body.partition(" ")
    word = first.strip(_EDGE).upper()
    verb = _ALIASES.get(word) or (Verb(word) if word in Verb.__members__ else None)
    if verb is None:
        return _unknown_command(first)
    if verb is Verb.HELP:
        return Command(Verb.HELP)
    return _arguments(verb, rest.strip(_EDGE), names, tags)


def _unknown_command(word: str) -> ParseError:
    guess = difflib.get_close_matches(word.strip(_EDGE).upper(), list(Verb.__members__), n=1, cutoff=0.6)
    shown = _shorten(_gsm(word), 20)
    if guess:
        return ParseError(
            "unknown-command", f"Unknown command '{shown}'. Did you mean {guess[0]}? Send HELP.", guess[0]
        )
    return ParseError("unknown-command", f"Unknown command '{shown}'. Send HELP for the commands.")


def _arguments(verb: Verb, rest: str, names: Sequence[str], tags: Sequence[str] = ()) -> Command | ParseError:
    known: dict[str, str] = {}
    for n in names:
        known.setdefault(_key(n), n)
    words = rest.split()
    if verb in _TAKES_TAG and words and words[0].casefold().startswith(TAG_PREFIX):
        return _tagged(verb, words, tags, names)
    if verb in _TIMED:
        return _mute(verb, words, known, names)
    if not words:
        if verb in _NAME_REQUIRED:
            return ParseError("missing-name", f"{verb} needs a check name, e.g. {verb} {_example(names)}.")
        return Command(verb)
    return _named(verb, words, known, None) or _unknown_name(" ".join(words), known)


def _named(verb: Verb, words: list[str], known: dict[str, str], duration: float | None) -> Command | None:
    """The command if ``words`` name a check (or are "all" where that is allowed), else None."""
    if not words:
        return Command(verb, None, duration)
    name = _match(words, known)
    if name is not None:
        return Command(verb, name, duration)
    if verb in _TAKES_ALL and " ".join(words).strip(_EDGE).casefold() == "all":
        return Command(verb, None, duration)
    return None


def _mute(verb: Verb, words: list[str], known: dict[str, str], names: Sequence[str]) -> Command | ParseError:
    splits = _duration_splits(words)
    if not splits:
        return ParseError(
            "missing-duration", f"{verb} needs a duration, e.g. {verb} {_example(names)} 2h or {verb} all 30m."
        )
    for before, seconds in splits:  # the longest name that leaves a duration wins
        if verb is Verb.MAINT and not before:
            continue  # a window needs a scope: a name, tag:NAME or all
        command = _named(verb, before, known, seconds)
        if command is not None:
            if not MUTE_MIN <= seconds <= MUTE_MAX:
                return ParseError("bad-duration", f"{verb} for 1m to 30d, e.g. {verb} all 2h.")
            return command
    if verb is Verb.MAINT and not splits[0][0]:
        return ParseError("missing-name", f"MAINT needs a check, tag:NAME or all, e.g. MAINT {_example(names)} 1h.")
    return _unknown_name(" ".join(splits[0][0]), known)


def _tagged(verb: Verb, words: list[str], tags: Sequence[str], names: Sequence[str]) -> Command | ParseError:
    """``tag:NAME`` and, for MUTE and MAINT, a duration after it."""
    tag = words[0][len(TAG_PREFIX) :].strip(_EDGE)
    if not tag:
        return ParseError("unknown-tag", f"Give the tag after tag:, e.g. {verb} tag:office.")
    found = next((t for t in tags if t == tag), None) or next((t for t in tags if t.casefold() == tag.casefold()), None)
    if found is None:
        shown = _shorten(_gsm(tag), NAME_SHOWN)
        listed = ", ".join(_shorten(_gsm(t), 20) for t in list(tags)[:5])
        more = f" Tags: {listed}." if listed else " No check has a tag."
        return ParseError("unknown-tag", _fit(f"No check has tag '{shown}'.{more}"))
    rest = words[1:]
    if verb not in _TIMED:
        if rest:
            return ParseError("bad-tag", f"{verb} tag:{_gsm(found)} takes nothing after the tag.")
        return Command(verb, None, None, found)
    splits = [(b, sec) for b, sec in _duration_splits(rest) if not b]
    if not splits:
        return ParseError("missing-duration", f"{verb} needs a duration, e.g. {verb} tag:{_gsm(found)} 2h.")
    seconds = splits[0][1]
    if not MUTE_MIN <= seconds <= MUTE_MAX:
        return ParseError("bad-duration", f"{verb} for 1m to 30d, e.g. {verb} tag:{_gsm(found)} 2h.")
    return Command(verb, None, seconds, found)


def _match(words: list[str], known: dict[str, str]) -> str | None:
    """The name the whole of ``words`` spells, trying the longest spelling first (with and
    without quotes and edge punctuation)."""
    phrase = " ".join(words)
    for candidate in (phrase, phrase.strip(_EDGE)):
        found = known.get(_key(candidate))
        if found is not None:
            return found
    return None


def closest_name(wanted: str, names: Iterable[str]) -> str | None:
    """The check name ``wanted`` probably meant ("webl" -> "web1", "web1 please" -> "web1"),
    or None: the "did you mean" of the SMS commands, the command line and the page."""
    known: dict[str, str] = {}
    for n in names:
        known.setdefault(_key(n), n)
    return _closest(wanted, known)


def _closest(wanted: str, known: dict[str, str]) -> str | None:
    key = _key(wanted)[:NAME_MATCH_MAX]  # bounds difflib's work on a long message
    # "web1 please": a known name followed by extra words; the longest such prefix wins
    words = key.split()
    for i in range(len(words) - 1, 0, -1):
        if " ".join(words[:i]) in known:
            return known[" ".join(words[:i])]
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return known[close[0]] if close else None


def _unknown_name(wanted: str, known: dict[str, str]) -> ParseError:
    guess = _closest(wanted, known)
    shown = _shorten(_gsm(wanted), NAME_SHOWN)
    if guess is not None:
        return ParseError(
            "unknown-name", f"No check '{shown}'. Did you mean {_shorten(_gsm(guess), NAME_SHOWN)}? Send HELP.", guess
        )
    return ParseError("unknown-name", f"No check '{shown}'. Send STATUS for the list.")


def _example(names: Sequence[str]) -> str:
    """A real name for an example (the first short one without spaces), else "web1"."""
    for n in names:
        if n and " " not in n and len(n) <= 20 and _gsm(n) == n:
            return n
    return "web1"


# ------------------------------------------------------------------------------ replies

# GSM 03.38 basic table without ESC and CR: one septet each, no escape sequences.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension-table characters (two septets) and a few common others, as basic look-alikes.
_LOOKALIKE = str.maketrans(
    {
        "[": "(",
        "]": ")",
        "{": "(",
        "}": ")",
        "~": "-",
        "^": "'",
        "|": "/",
        "\\": "/",
        "`": "'",
        "€": "EUR",
        "\t": " ",
        "\r": " ",
        "Ł": "L",
        "ł": "l",
        "Đ": "D",
        "đ": "d",
        "Œ": "OE",
        "œ": "oe",
        "\u0131": "i",
        "Þ": "Th",
        "þ": "th",
        "ð": "d",
    }
)


def _gsm(text: str) -> str:
    """``text`` in GSM-7 basic characters: look-alikes, accents dropped where the accented
    letter is missing, anything else "?". Newlines become spaces."""
    out = []
    for ch in _normalize(text).translate(_LOOKALIKE):
        if ch in _GSM_BASIC and ch != "\n":
            out.append(ch)
            continue
        base = unicodedata.normalize("NFKD", ch)[:1]
        out.append(base if base in _GSM_BASIC and base != "\n" else "?")
    return "".join(out)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)].rstrip() + "..."


def _fit(text: str) -> str:
    return _shorten(text, SMS_MAX)


def is_reply_safe(text: str) -> bool:
    """True when ``text`` is GSM-7 basic only and fits one SMS (what every reply here is)."""
    return len(text) <= SMS_MAX and all(ch in _GSM_BASIC for ch in text)


def render_help(*, pin_required: bool = False) -> str:
    """The HELP reply (never contains the PIN itself)."""
    text = (
        "Commands: STATUS [name], ACK [name], ON/OFF name, MUTE [name] 2h, "
        "UNMUTE [name], PAUSE/RESUME name, MAINT name 1h, HELP."
    )
    if pin_required:
        text += " Start each with your PIN."
    return _fit(text)


_ORDER = (Status.UP, Status.LATE, Status.DOWN, Status.PAUSED, Status.NEW)


def _age(seconds: float | None) -> str:
    return humanize(seconds) if seconds is not None else ""


def render_check(name: str, status: Status | str, last_ping_age: float | None) -> str:
    """STATUS for one check: "web1: up, last ping 3 min ago"."""
    st = Status(status)
    shown = _shorten(_gsm(name), NAME_SHOWN * 3)
    if last_ping_age is None:
        return _fit(f"{shown}: {st}, never pinged")
    return _fit(f"{shown}: {st}, last ping {_age(last_ping_age)} ago")


def render_status(checks: Sequence[tuple[str, Status | str, float | None]]) -> str:
    """STATUS for all checks: counts, then the problems, down before late, the longest silent
    first: "3 up, 1 down: backup down 2 h 5 min". Fits one SMS ("+N more" when it must)."""
    if not checks:
        return "No checks yet."
    rows = [(name, Status(status), age) for name, status, age in checks]
    counts = {s: 0 for s in _ORDER}
    for _, s, _ in rows:
        counts[s] += 1
    head = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if counts[Status.UP] == len(rows):
        head = f"All {len(rows)} up" if len(rows) > 1 else "1 up"
    problems = sorted(
        (r for r in rows if r[1] in (Status.DOWN, Status.LATE)),
        key=lambda r: (r[1] is not Status.DOWN, -(r[2] if r[2] is not None else -1.0), r[0].casefold()),
    )
    items = [" ".join(filter(None, (_shorten(_gsm(n), NAME_SHOWN), str(s), _age(a)))) for n, s, a in problems]
    if not items:
        return _fit(head + ".")
    for shown in range(len(items), -1, -1):
        more = len(items) - shown
        parts = items[:shown] + ([f"+{more} more"] if more else [])
        text = f"{head}: {', '.join(parts)}"
        if len(text) <= SMS_MAX:
            return text
    return _fit(head)  # unreachable in practice: the head alone is short


def render_done(command: Command) -> str:
    """The confirmation after the service carried out ``command`` (``name`` as resolved by
    the caller; None means all checks)."""
    who = _shorten(_gsm(command.name), NAME_SHOWN * 2) if command.name else "all"
    if command.tag is not None:
        who = "tag:" + _shorten(_gsm(command.tag), NAME_SHOWN)
    v = command.verb
    if v is Verb.ON:
        text = f"ON {who}: SMS alerts on"
    elif v is Verb.OFF:
        text = f"OFF {who}: SMS alerts off"
    elif v is Verb.ACK:
        text = f"ACK {who}: no more reminders until it recovers"
    elif v is Verb.MUTE:
        text = f"MUTE {who}: no reminders for {humanize(command.duration or 0)}"
    elif v is Verb.UNMUTE:
        text = f"UNMUTE {who}: reminders back on"
    elif v is Verb.PAUSE:
        text = f"PAUSE {who}: paused, no alerts until RESUME or its next ping"
    elif v is Verb.RESUME:
        text = f"RESUME {who}: watching again"
    elif v is Verb.MAINT:
        text = f"MAINT {who}: maintenance for {humanize(command.duration or 0)}, alerts wait until it ends"
    else:
        return render_help()
    return _fit(text)


def render_nothing_to_ack() -> str:
    """ACK without a name when no alert is outstanding."""
    return "Nothing to acknowledge: no check is down."


def render_tagged(command: Command, n: int) -> str:
    """The confirmation of ACK, MUTE or UNMUTE ``tag:NAME`` done to ``n`` checks."""
    who = "tag:" + _shorten(_gsm(command.tag or ""), NAME_SHOWN)
    checks = f"{n} check" + ("" if n == 1 else "s")
    v = command.verb
    if v is Verb.ACK:
        if not n:
            return _fit(f"ACK {who}: nothing to acknowledge, no check with that tag is down")
        return _fit(f"ACK {who}: {checks} acknowledged, no more reminders until they recover")
    if v is Verb.MUTE:
        return _fit(f"MUTE {who}: {checks}, no reminders for {humanize(command.duration or 0)}")
    if v is Verb.UNMUTE:
        return _fit(f"UNMUTE {who}: {checks}, reminders back on")
    return render_done(command)


def render_maint(command: Command, until: str) -> str:
    """The confirmation of MAINT: the window added and when it ends (``until``, "04:00")."""
    who = _shorten(_gsm(command.name), NAME_SHOWN * 2) if command.name else "all"
    if command.tag is not None:
        who = "tag:" + _shorten(_gsm(command.tag), NAME_SHOWN)
    return _fit(f"MAINT {who}: maintenance until {until}, alerts wait until then")


def render_failed(command: Command, why: str) -> str:
    """A command the service refused (``why``: its words)."""
    return _fit(f"{command.verb} not done: {_gsm(why)}")
