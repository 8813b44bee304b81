"""Copy-paste ways to ping a check: crontab with curl or wget, the job's exit status, a systemd
timer, email. The check page and ``hbgw check show`` print the same texts. Pure."""

from __future__ import annotations

import dataclasses
import re

from gateway.model import Check
from gateway.rules.durations import format_duration


@dataclasses.dataclass(frozen=True)
class Snippet:
    key: str
    title: str
    text: str


def snippets(check: Check, url: str, email: str) -> list[Snippet]:
    """The ways to ping ``check`` at its ping ``url`` or ``email`` address."""
    s = check.schedule
    if s.cron:  # noqa: SIM108  (two lines read better than one ternary here)
        when = s.cron if s.tz == "UTC" else f"CRON_TZ={s.tz}\n{s.cron}"
    else:
        when = _cron_for_period(s.period)
    curl = f"curl -fsS -m 10 --retry 3 -o /dev/null {url}"
    # Tokens made before url_secret() may start with "-": end mail's options before it.
    to = f"-- {email}" if email.startswith("-") else email
    return [
        Snippet("curl", "crontab, curl", f"{when} {curl}"),
        Snippet("wget", "crontab, wget", f"{when} wget -q -T 10 -t 3 -O /dev/null {url}"),
        Snippet(
            "exit",
            "crontab, report the job's exit status",
            f"{when} /usr/local/bin/job.sh; curl -fsS -m 10 --retry 3 -o /dev/null {url}/$?",
        ),
        Snippet("systemd", "systemd timer", _systemd_snippet(check, url)),
        Snippet("email", "email", f"{email}\n\n# e.g. from cron:\n{when} echo ok | mail -s ok {to}"),
    ]


SYSTEMD_TIMER_EVERY = 300.0  # what systemd/hbgw-ping@.timer ships with


def _systemd_snippet(check: Check, url: str) -> str:
    """How to ping ``check`` with the hbgw-ping@ template units from systemd/: the URL goes in a
    root-only file handed to curl as a credential (never on a command line or in a unit file that
    every local user can read); a drop-in sets this check's interval."""
    unit = re.sub(r"[^A-Za-z0-9_.]+", "-", check.name).strip("-.")[:60] or "check"
    s = check.schedule
    lines = [
        "# with hbgw-ping@.service and hbgw-ping@.timer from heartbeat-gateway's systemd/ folder",
        "install -m 0644 hbgw-ping@.service hbgw-ping@.timer /etc/systemd/system/",
        f"mkdir -p /etc/hbgw-ping && (umask 077; echo '{url}' > /etc/hbgw-ping/{unit}.url)",
    ]
    if s.cron:
        lines += [
            f"# a cron schedule ({s.cron}, {s.tz}): `systemctl edit hbgw-ping@{unit}.timer`,",
            "# empty OnBootSec= and OnUnitActiveSec=, and the matching OnCalendar= (see",
            "# systemd.time(7)); or let the job ping when it ends (the exit-status line)",
        ]
    elif s.period != SYSTEMD_TIMER_EVERY:
        dropin = f"/etc/systemd/system/hbgw-ping@{unit}.timer.d"
        lines += [
            f"# every {format_duration(s.period)} instead of the timer's 5 minutes",
            f"mkdir -p {dropin} && printf '[Timer]\\nOnUnitActiveSec=\\n"
            f"OnUnitActiveSec={format_duration(s.period)}\\n' > {dropin}/interval.conf",
        ]
    lines.append(f"systemctl daemon-reload && systemctl enable --now hbgw-ping@{unit}.timer")
    return "\n".join(lines)


def _cron_for_period(period: float) -> str:
    """A crontab schedule that pings at least every ``period`` seconds."""
    minutes = max(1, int(period // 60))
    if minutes == 1:
        return "* * * * *"
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = minutes // 60
    if hours < 24:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    return "0 0 * * *"
