"""Configuration: one TOML file read into frozen dataclasses.

Unknown keys and bad values stop start-up with a message naming the file, the key and what is
allowed (:class:`ConfigError`, exit code 2). Every key has a default, so ``--demo`` needs no file.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.rules import escalation as ladder
from gateway.rules import settings as rules
from gateway.rules.durations import parse_duration
from gateway.rules.relay import MAX_PARTS, RelayRules
from gateway.rules.settings import E164, PIN, Settings, SettingsError


class ConfigError(Exception):
    """A configuration problem a person can fix; the message says where and how."""


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "0.0.0.0:8080"
    base_url: str | None = None  # how servers reach us, for printed ping URLs
    max_body: int = 1_000_000  # bytes read of a ping body (the first 10,000 are stored); more is 413
    threads: int = 8  # worker threads for the web pages and JSON API (pings need none)
    trusted_proxies: tuple[str, ...] = ()
    idle_timeout: float = 30.0  # seconds a client gets to send a request head (and a ping body)


@dataclass(frozen=True)
class SmtpConfig:
    listen: str | None = None  # None: no email heartbeats
    domain: str = "hbgw.local"
    max_size: int = 256_000
    max_recipients: int = 50


@dataclass(frozen=True)
class ModemConfig:
    backend: str = "none"  # "at" | "gammu" | "simulator" | "none"
    device: str = "/dev/hbgw-modem"
    baudrate: int = 115200
    pin: str | None = None
    smsc: str | None = None
    country_code: str | None = None  # e.g. "33": turns national numbers from the modem into E.164
    # The recovery ladder (modem.keeper): a modem that stops answering or stays off the network
    # this long is resynced, its radio cycled, its port reopened, its USB device re-enumerated
    # (under sysfs_root), then power_cycle_command (an argv list, no shell) is run, if set.
    recover_after: float = 120.0
    # How long the network may take to accept one SMS part (AT+CMGS) before the send counts as
    # failed (and the modem as in trouble: the recovery ladder starts after recover_after).
    send_timeout: float = 60.0
    # The daily canary (gateway.rules.smspath): an SMS to own_number (else the number the SIM
    # reports) at canary_at local time (minutes after midnight; None: off) plus up to
    # canary_window, expected back within canary_timeout. On by default when own_number is set.
    own_number: str | None = None
    canary_at: int | None = None
    canary_window: float = 1800.0
    canary_timeout: float = 600.0
    # The prepaid balance by USSD every balance_every; an amount below balance_min is a trouble.
    balance_ussd: str | None = None
    balance_pattern: str = r"(\d+(?:[.,]\d{1,2})?)"
    balance_min: float | None = None
    balance_every: float = 7 * 86400.0
    sysfs_root: str = "/sys"
    power_cycle_command: tuple[str, ...] = ()


# The [alerts] table is the one Settings type that governs alerts everywhere (file, page, API).
AlertsConfig = Settings


@dataclass(frozen=True)
class EmailConfig:
    host: str | None = None
    port: int = 587
    tls: str = "starttls"  # "starttls" | "ssl" | "none"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "hbgw@localhost"


@dataclass(frozen=True)
class SecurityConfig:
    ping_key: str | None = field(default=None, repr=False)
    auto_create: bool = False
    max_checks: int = 1000


@dataclass(frozen=True)
class DefaultsConfig:
    period: float = 900.0
    grace: float = 900.0


@dataclass(frozen=True)
class PeerConfig:
    """Watching the watcher: ping another gateway (or any Healthchecks-style URL) every interval."""

    url: str | None = field(default=None, repr=False)  # holds a ping token: never logged
    interval: float = 60.0
    timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("/var/lib/hbgw")
    http: HttpConfig = HttpConfig()
    smtp: SmtpConfig = SmtpConfig()
    modem: ModemConfig = ModemConfig()
    alerts: Settings = field(default_factory=Settings)
    email: EmailConfig = EmailConfig()
    security: SecurityConfig = SecurityConfig()
    defaults: DefaultsConfig = DefaultsConfig()
    peer: PeerConfig = PeerConfig()
    relay: RelayRules = field(default_factory=RelayRules)  # the box as the house's SMS gateway (gateway.rules.relay)
    contacts: tuple[ladder.Contact, ...] = ()  # [contacts], for relayed messages addressed by name
    demo: bool = False
    source: Path | None = None  # the file it came from, for messages

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hbgw.sqlite3"


# ---------------------------------------------------------------------------------------------
# parsing


def parse_hostport(text: str, *, what: str = "address") -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → (host, port). Port 0 means "any free port"."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\s\[\]]+):(\d{1,5})", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a HOST:PORT {what} (e.g. 127.0.0.1:8080)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


class _Reader:
    """Pulls typed values out of one TOML table, remembering where they came from."""

    def __init__(self, source: str, table: str, data: Any, known: Sequence[str] = ()) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: [{table}] must be a table")
        self.source, self.table, self.data = source, table, dict(data)
        self.known = list(known)  # every key asked for, for the "unknown key" message

    def where(self, key: str) -> str:
        return f"{self.source}: [{self.table}] {key}" if self.table else f"{self.source}: {key}"

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {problem}")

    def pop(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.known.append(key)
        if key not in self.data:
            return default
        value = self.data.pop(key)
        # bool is an int in Python; config booleans and numbers stay apart.
        if isinstance(value, bool) and kind is not bool:
            raise self.fail(key, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def checked(self, key: str, kind: type | tuple[type, ...], default: Any, check: Callable[[str, Any], Any]) -> Any:
        """A value validated by one of the settings rules (gateway.rules.settings), the same rule
        the settings page and the API use."""
        value = self.pop(key, kind, None)
        if value is None:
            return default
        try:
            return check(key, value)
        except SettingsError as e:
            raise self.fail(key, str(e)) from None

    def string(self, key: str, default: str | None) -> Any:
        value = self.pop(key, str, default)
        if isinstance(value, str) and not value.strip() and default is not None:
            raise self.fail(key, "must not be empty")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self.pop(key, bool, default))

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.pop(key, int, default)
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo} and {hi}, got {value}")
        return int(value)

    def duration(self, key: str, default: float, lo: float = 0.0) -> float:
        value = self.pop(key, (str, int, float), None)
        if value is None:
            return default
        try:
            seconds = parse_duration(_with_unit(key, value))
        except SettingsError as e:
            raise self.fail(key, str(e)) from None
        except ValueError as e:
            raise self.fail(key, str(e)) from None
        if seconds < lo:
            raise self.fail(key, f"must be at least {lo:g}s")
        return seconds

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.pop(key, str, default)
        if value not in allowed:
            raise self.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
        return str(value)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.pop(key, list, [])
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected a list of strings")
        return tuple(value)

    def hostport(self, key: str, default: str | None) -> str | None:
        value: str | None = self.string(key, default)
        if value is not None:
            try:
                parse_hostport(value)
            except ValueError as e:
                raise self.fail(key, str(e)) from None
        return value

    def done(self) -> None:
        """Refuse what is left: a key nobody asked for is a typo or a setting we do not have."""
        if self.data:
            key = sorted(self.data)[0]
            close = difflib.get_close_matches(key, self.known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"[{self.table}]" if self.table else "the top level"
            raise self.fail(key, f"unknown key{hint}; {where} takes {', '.join(self.known)}")


_AUTO: Any = object()  # [modem] canary_at not given: 08:00 when own_number is set, else off


def _canary_at(key: str, value: str) -> int | None:
    return None if value.strip().lower() == "off" else rules.time_of_day(key, value)


def _ussd_code(key: str, value: str) -> str:
    if not re.fullmatch(r"[*#][0-9*#]{1,30}#", value.strip()):
        raise SettingsError(key, f"{value!r} is not a USSD code like *100#")
    return value.strip()


def _pattern(key: str, value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise SettingsError(key, f"not a regular expression: {e}") from None
    return value


def _steps(raw: list[Any], people: dict[str, ladder.Contact]) -> tuple[ladder.Step, ...]:
    """The ladder, with the step at fault named in the message ("escalation[2].call: ...")."""
    try:
        return ladder.steps(raw, people)
    except SettingsError as e:
        where = e.field.removeprefix("escalation")
        raise SettingsError(e.field, f"{where.lstrip('.')}: {e}" if where else str(e)) from None


def _zone(r: _Reader, key: str, default: str) -> str:
    import zoneinfo

    name = r.string(key, default)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise r.fail(key, f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)") from None
    return str(name)


def local_zone() -> str:
    """This machine's IANA time zone name (TZ, /etc/timezone, /etc/localtime), else UTC."""
    import zoneinfo

    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                zoneinfo.ZoneInfo(name)
                return name
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    return "UTC"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


TABLES = ("http", "smtp", "modem", "contacts", "alerts", "email", "security", "defaults", "peer", "relay")


def _section(src: str, top: dict[str, Any], name: str) -> _Reader:
    assert name in TABLES
    return _Reader(src, name, top.pop(name, {}))


def parse(data: dict[str, Any], source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Build a Config from parsed TOML. Raises ConfigError naming ``source`` and the key."""
    top = dict(data)
    d = Config()

    r = _section(source, top, "http")
    trusted = r.strings("trusted_proxies")
    for p in trusted:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise r.fail("trusted_proxies", f"{p!r} is not an IP address or network") from None
    http = HttpConfig(
        listen=r.hostport("listen", d.http.listen) or d.http.listen,
        base_url=r.string("base_url", None),
        max_body=r.integer("max_body", d.http.max_body, 1024, 10_000_000),
        threads=r.integer("threads", d.http.threads, 1, 64),
        trusted_proxies=trusted,
        idle_timeout=r.duration("idle_timeout", d.http.idle_timeout, 1.0),
    )
    if http.base_url is not None and not re.match(r"^https?://[^\s/]+", http.base_url):
        raise r.fail("base_url", "must start with http:// or https://")
    r.done()

    r = _section(source, top, "smtp")
    smtp = SmtpConfig(
        listen=r.hostport("listen", None),
        domain=r.string("domain", d.smtp.domain).lower(),
        max_size=r.integer("max_size", d.smtp.max_size, 1024, 50_000_000),
        max_recipients=r.integer("max_recipients", d.smtp.max_recipients, 1, 1000),
    )
    r.done()

    r = _section(source, top, "modem")
    modem = ModemConfig(
        backend=r.choice("backend", d.modem.backend, ("at", "gammu", "simulator", "none")),
        device=r.string("device", d.modem.device),
        baudrate=r.integer("baudrate", d.modem.baudrate, 300, 4_000_000),
        pin=r.string("pin", None),
        smsc=r.string("smsc", None),
        country_code=r.string("country_code", None),
        recover_after=r.duration("recover_after", d.modem.recover_after, lo=1.0),
        send_timeout=r.duration("send_timeout", d.modem.send_timeout, lo=2.0),
        own_number=r.checked("own_number", str, None, lambda k, v: rules.phone_numbers(k, [v])[0]),
        canary_at=r.checked("canary_at", str, _AUTO, _canary_at),
        canary_window=r.duration("canary_window", d.modem.canary_window),
        canary_timeout=r.duration("canary_timeout", d.modem.canary_timeout, lo=30.0),
        balance_ussd=r.checked("balance_ussd", str, None, _ussd_code),
        balance_pattern=r.checked("balance_pattern", str, d.modem.balance_pattern, _pattern),
        balance_min=r.checked("balance_min", (int, float), None, lambda k, v: float(v)),
        balance_every=r.duration("balance_every", d.modem.balance_every, lo=3600.0),
        sysfs_root=r.string("sysfs_root", d.modem.sysfs_root),
        power_cycle_command=r.strings("power_cycle_command"),
    )
    if modem.canary_at is _AUTO:
        modem = dataclasses.replace(modem, canary_at=8 * 60 if modem.own_number else None)
    if not modem.sysfs_root.startswith("/"):
        raise r.fail("sysfs_root", "must be an absolute path")
    if modem.power_cycle_command and not modem.power_cycle_command[0].strip():
        raise r.fail("power_cycle_command", "the first element must be the program to run")
    if modem.country_code is not None and not re.fullmatch(r"[1-9]\d{0,2}", modem.country_code):
        raise r.fail("country_code", "the country calling code without + (e.g. 33, 1, 49)")
    if modem.pin is not None and not PIN.fullmatch(modem.pin):
        raise r.fail("pin", "a SIM PIN is 4 to 8 digits")
    if modem.smsc is not None and not E164.fullmatch(modem.smsc):
        raise r.fail("smsc", f"{modem.smsc!r} is not an E.164 number")
    r.done()

    r = _section(source, top, "contacts")
    try:
        people = ladder.contacts(r.data)
    except SettingsError as e:
        raise ConfigError(f"{source}: [{e.field.replace('contacts.', 'contacts] ', 1)}: {e}") from None
    r.data.clear()
    r.done()

    r = _section(source, top, "alerts")
    da = d.alerts
    alerts = Settings(
        sms_to=r.checked("sms_to", list, (), rules.phone_numbers),
        email_to=r.checked("email_to", list, (), rules.email_addresses),
        push_to=r.checked("push_to", list, (), rules.push_urls),
        sms_allow=r.checked("sms_allow", list, (), rules.phone_numbers),
        sms_pin=r.checked("sms_pin", str, None, rules.pin),
        repeat=r.checked(
            "repeat", (str, int, float), da.repeat, lambda k, v: rules.duration(k, _with_unit(k, v), rules.REPEAT_MIN)
        ),
        coalesce=r.duration("coalesce", da.coalesce),
        dependency_window=r.duration("dependency_window", da.dependency_window),
        max_sms_per_hour=r.checked(
            "max_sms_per_hour", int, da.max_sms_per_hour, lambda k, v: rules.whole_number(k, v, 1, rules.BUDGET_MAX)
        ),
        silent_summary_min=r.integer("silent_summary_min", da.silent_summary_min, 2, 10_000),
        quiet_hours=r.checked("quiet_hours", str, None, rules.quiet_hours),
        tz=_zone(r, "tz", local_zone()),
        fallback_after=r.integer("fallback_after", da.fallback_after, 1, 100),
        modem_alert_after=r.duration("modem_alert_after", da.modem_alert_after, lo=1.0),
        daily_summary=r.checked("daily_summary", str, None, rules.time_of_day),
        escalation=r.checked("escalation", list, (), lambda k, v: _steps(v, people)),
        ladders=r.checked("ladders", dict, (), lambda k, v: ladder.named_ladders(v, people)),
        call_answer_acks=r.boolean("call_answer_acks", da.call_answer_acks),
        ring_for=r.duration("ring_for", da.ring_for, lo=5.0),
    )
    r.done()

    r = _section(source, top, "email")
    email = EmailConfig(
        host=r.string("host", None),
        port=r.integer("port", d.email.port, 1, 65535),
        tls=r.choice("tls", d.email.tls, ("starttls", "ssl", "none")),
        user=r.string("user", None),
        password=r.string("password", None),
        sender=r.string("from", d.email.sender),
    )
    r.done()

    r = _section(source, top, "security")
    security = SecurityConfig(
        ping_key=r.string("ping_key", None),
        auto_create=r.boolean("auto_create", d.security.auto_create),
        max_checks=r.integer("max_checks", d.security.max_checks, 1, 1_000_000),
    )
    # Before the one settings type, the allow-list and the PIN lived in [security]: still read
    # there (not listed as its keys), into the same settings and through the same rules.
    legacy = _Reader(source, "security", {k: r.data.pop(k) for k in ("sms_allow", "sms_pin") if k in r.data})
    for key, kind, check in (("sms_allow", list, rules.phone_numbers), ("sms_pin", str, rules.pin)):
        value = legacy.checked(key, kind, None, check)
        if value is not None:
            if getattr(alerts, key) not in ((), None):
                raise legacy.fail(key, f"also set in [alerts]; keep it in [alerts] {key} only")
            alerts = dataclasses.replace(alerts, **{key: value})
    if security.ping_key is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", security.ping_key):
        raise r.fail("ping_key", "must be 16-128 characters of A-Z a-z 0-9 _ - (hbgw init makes one)")
    r.done()

    r = _section(source, top, "defaults")
    defaults = DefaultsConfig(
        period=r.duration("period", d.defaults.period, lo=1.0),
        grace=r.duration("grace", d.defaults.grace),
    )
    r.done()

    r = _section(source, top, "peer")
    peer = PeerConfig(
        url=r.string("url", None),
        interval=r.duration("interval", d.peer.interval, lo=1.0),
        timeout=r.duration("timeout", d.peer.timeout, lo=1.0),
    )
    if peer.url is not None and not re.match(r"^https?://[^\s/]+/\S*$", peer.url):
        raise r.fail("url", "must be an http:// or https:// URL, e.g. https://other-gateway:8080/ping/<token>")
    r.done()

    relay = _relay(_section(source, top, "relay"))

    r = _Reader(source, "", top, known=[f"[{t}]" for t in TABLES])
    raw_dir = r.string("data_dir", None)
    r.done()
    data_dir = d.data_dir
    if raw_dir is not None:
        data_dir = Path(raw_dir).expanduser()
        if not data_dir.is_absolute() and base_dir is not None:
            data_dir = base_dir / data_dir
    return Config(
        data_dir=data_dir,
        http=http,
        smtp=smtp,
        modem=modem,
        alerts=alerts,
        email=email,
        security=security,
        defaults=defaults,
        peer=peer,
        relay=relay,
        contacts=tuple(people.values()),
        source=Path(source) if source != "<config>" else None,
    )


def _with_unit(key: str, value: Any) -> str:
    """A duration in the file is a string with a unit: is ``repeat = 15`` seconds or minutes?"""
    if not isinstance(value, str):
        raise SettingsError(key, f'{value!r} needs a unit, e.g. "{value}s" or "{value}m"')
    return value


def _relay(r: _Reader) -> RelayRules:
    """``[relay]``: who may send SMS through the box, and how much (gateway.rules.relay)."""
    d = RelayRules()
    allow_from = r.strings("allow_from")
    for entry in allow_from:
        if "@" not in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise r.fail("allow_from", f"{entry!r} is not an address, an @domain or a network") from None
    key = r.string("key", None)
    if key is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", key):
        raise r.fail("key", "must be 16-128 characters of A-Z a-z 0-9 _ -")
    share = r.pop("share", (int, float), d.share)
    if not 0 < share <= 1:
        raise r.fail("share", f"a fraction of [alerts] max_sms_per_hour, above 0 and at most 1, got {share}")
    rules_ = RelayRules(
        enabled=r.boolean("enabled", d.enabled),
        max_parts=r.integer("max_parts", d.max_parts, 1, MAX_PARTS),
        unicode=r.choice("unicode", d.unicode, ("ucs2", "transliterate")),
        share=float(share),
        per_sender_per_hour=r.integer("per_sender_per_hour", d.per_sender_per_hour, 1, 10_000),
        allow_from=allow_from,
        key=key,
        forward_sms=r.choice("forward_sms", d.forward_sms, ("off", "strangers", "all")),
        allow_numbers=r.checked("allow_numbers", list, (), rules.phone_numbers),
    )
    r.done()
    return rules_


def load(path: Path) -> Config:
    """Read and validate the TOML file at ``path``. Raises ConfigError (never a traceback)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (create one with: hbgw init)") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied reading the config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse(data, str(path), base_dir=path.parent)


DEMO_DATA_DIR = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "hbgw-demo"


def demo(base: Config | None = None) -> Config:
    """Demo mode: loopback only, simulated modem, email heartbeats on 2525, a data dir of its own."""
    c = base or Config(data_dir=DEMO_DATA_DIR)
    sec = c.security
    owner = c.alerts.sms_to[0] if c.alerts.sms_to else "+15551230000"
    # The ladder, shown: the DOWN SMS, then (nobody acknowledged) the demo phone rings.
    demo_ladder = ladder.steps(
        [{"after": "0m", "sms": ["owner"]}, {"after": "2m", "call": ["owner"]}],
        ladder.contacts({"owner": {"phone": owner}}),
    )
    return dataclasses.replace(
        c,
        demo=True,
        http=dataclasses.replace(c.http, listen="127.0.0.1:8080") if base is None else c.http,
        smtp=dataclasses.replace(c.smtp, listen=c.smtp.listen or "127.0.0.1:2525"),
        modem=dataclasses.replace(c.modem, backend="simulator"),
        alerts=dataclasses.replace(
            c.alerts,
            sms_to=c.alerts.sms_to or ("+15551230000",),
            sms_allow=c.alerts.sms_allow or ("+15551230000",),
            escalation=c.alerts.escalation or demo_ladder,
        ),
        security=dataclasses.replace(sec, auto_create=True if base is None else sec.auto_create),
    )


TEMPLATE = """\
# heartbeat-gateway configuration (hbgw). Durations always take a unit, in quotes: "90s", "15m", "2h", "1d".
# Unknown keys are an error, so a typo never goes unnoticed.

# Where the SQLite database and runtime state live.
data_dir = "{data_dir}"

[http]
# Servers ping http://<this box>:8080/ping/<token>. Put a TLS reverse proxy in front of it if
# servers reach it over the internet (see README).
listen = "0.0.0.0:8080"
# base_url = "https://alarm.example.net"   # printed in ping URLs; defaults to this host's name
# max_body = 1000000                        # bytes read of a ping body, 10000 stored (larger: 413)
# trusted_proxies = ["127.0.0.1"]           # honour X-Forwarded-For only from these
# idle_timeout = "30s"                      # time a client gets to send a request; then cut off

[smtp]
# Email heartbeats: <token>@<domain>. Uncomment to listen (port 25 needs CAP_NET_BIND_SERVICE).
# listen = "0.0.0.0:25"
domain = "hbgw.local"

[modem]
# "at" (pyserial, most USB sticks), "gammu" (python-gammu), "simulator", or "none".
backend = "none"
device = "/dev/hbgw-modem"
# pin = "1234"        # SIM PIN, if the SIM asks for one (never retried when wrong)
# smsc = "+15550000000"
# recover_after = "2m"  # no answer or no network this long: resync, radio cycle, reopen, USB reset
# send_timeout = "60s"  # the network's longest time to accept one SMS part
# own_number = "+15551234567"  # the SIM's own number: a daily SMS to itself proves the path
# canary_at = "08:00"   # when (plus up to canary_window = "30m"); "off" to stop it
# balance_ussd = "*100#"  # ask the prepaid balance weekly; balance_min = 5.0 warns below it
# power_cycle_command = ["uhubctl", "-l", "1-1", "-a", "cycle"]  # optional last step

[alerts]
# Who gets SMS alerts (E.164). Email is the second channel and the fallback.
sms_to = []
email_to = []
# Push notifications too (apprise URLs: ntfy, Gotify, Telegram, Pushover, a JSON webhook...).
# They hold tokens: pages, logs and the outbox show them as ntfy://***#1a2b3c4d.
# push_to = ["ntfy://ntfy.sh/my-secret-topic"]
repeat = "15m"        # reminder interval while a server stays down
coalesce = "3s"       # alerts this close together become one SMS
# dependency_window = "2m"  # a server's DOWN waits this long for its parent (--depends-on) to go down
max_sms_per_hour = 30 # beyond it: one summary SMS, the rest by email
# quiet_hours = "22:00-07:00"  # reminders wait until the end (a first DOWN still goes out)
# tz = "Europe/Paris"          # for times in messages; defaults to this machine's zone
# daily_summary = "08:00"      # an "all is well" SMS every day at this time (in tz)
# Phones allowed to send SMS commands (STATUS, ACK web1, OFF web1, ...).
sms_allow = []
# sms_pin = "4321"    # if set, commands must start with it: "4321 STATUS"
# The settings page can change sms_to, email_to, sms_allow, sms_pin, repeat, quiet_hours and
# max_sms_per_hour: a field changed there wins over this file until "use the file's values".

# An escalation ladder instead (see README, "Alerts that reach you"):
# [contacts]
# owner = {{ phone = "+15551230000", email = "owner@example.net", push = ["ntfy://ntfy.sh/my-topic"] }}
# [[alerts.escalation]]
# after = "0m"
# sms = ["owner"]
# push = ["owner"]
# [[alerts.escalation]]
# after = "10m"
# call = ["owner"]

[email]
# Outbound relay for email alerts.
# host = "smtp.example.net"
# port = 587
# tls = "starttls"    # "starttls" | "ssl" | "none"
# user = "alarm@example.net"
# password = "..."
# from = "alarm@example.net"

[security]
# Name-based pings: /ping/<ping_key>/<name>. Keep it secret like a password.
ping_key = "{ping_key}"
auto_create = false   # true: a ping for an unknown name with the right key creates the check
max_checks = 1000

[defaults]
period = "15m"
grace = "15m"

# [peer]
# Watching the watcher: ping a second gateway (a check there goes DOWN if this box dies).
# url = "https://other-gateway:8080/ping/<token>"
# interval = "1m"
"""


def render_template(data_dir: Path, ping_key: str) -> str:
    return TEMPLATE.format(data_dir=str(data_dir).replace("\\", "\\\\").replace('"', '\\"'), ping_key=ping_key)
