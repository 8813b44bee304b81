"""The appliance: the systemd units and udev rule, sd_notify + watchdog as the unit starts the
daemon, backup/restore, the peer heartbeat between two gateways, the daily summary SMS, and
start-up faults (no modem, read-only or full disk)."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config as cfgmod
from gateway.config import AlertsConfig, Config, ConfigError, PeerConfig
from gateway.model import PingKind, Status
from gateway.rules import summary as daily
from gateway.runtime import peer
from gateway.service import Service
from gateway.store import Store, StoreError, restore_database
from tests.support.daemon import Daemon, hbgw, hbgw_json, wait_for, write_config

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
SERVICE = UNITS / "hbgw.service"
INSTALLED_HBGW = "/opt/hbgw/.venv/bin/hbgw"
OWNER = "+15551230000"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze (systemd package)")


def unit_settings(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting in a unit file, in order (keys may repeat)."""
    out, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def setting(path: Path, key: str) -> list[str]:
    return [v for _, k, v in unit_settings(path) if k == key]


def ping(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return int(r.status)


def token_of(name: str, cfg: Path) -> str:
    return str(hbgw_json("check", "show", name, config=cfg)["ping_url"].rsplit("/", 1)[1])


# ------------------------------------------------------------------------------- the units


def test_it_is_the_unit_the_design_asks_for() -> None:
    get = {k: v for _, k, v in unit_settings(SERVICE)}
    assert get["Type"] == "notify" and get["WatchdogSec"] == "30s"
    assert get["Restart"] == "on-failure" and get["RestartPreventExitStatus"] == "2"
    assert get["StartLimitBurst"] and get["StartLimitIntervalSec"] and get["RestartSec"]
    assert get["ExecStart"] == f"{INSTALLED_HBGW} serve --config /etc/hbgw/hbgw.toml --data-dir /var/lib/hbgw"
    assert get["SupplementaryGroups"] == "dialout"
    assert (get["StateDirectory"], get["ConfigurationDirectory"]) == ("hbgw", "hbgw")
    # the modem stays reachable: a closed device policy that allows USB serial ports only
    assert get["DevicePolicy"] == "closed" and "PrivateDevices" not in get
    assert setting(SERVICE, "DeviceAllow") == ["char-ttyUSB rw", "char-ttyACM rw"]
    assert get["CapabilityBoundingSet"] == "" and get["UMask"] == "0077"
    assert get["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    # the install guide puts the code where the unit runs it from
    guide = (ROOT / "docs" / "install.md").read_text()
    assert "/opt/hbgw" in guide and "90-hbgw-modem.rules" in guide and "hbgw.service" in guide


@pytest.fixture
def units_here(tmp_path: Path) -> Path:
    """The units, with ExecStart pointing at this checkout's hbgw instead of /opt/hbgw (which
    `systemd-analyze verify` would report as missing on a machine where it is not installed)."""
    exe = Path(sys.executable).parent / "hbgw"
    if not exe.exists():
        exe = Path(shutil.which("hbgw") or "/usr/bin/true")
    (tmp_path / "hbgw.service").write_text(SERVICE.read_text().replace(INSTALLED_HBGW, str(exe)))
    for name in ("hbgw-ping@.service", "hbgw-ping@.timer"):
        shutil.copy(UNITS / name, tmp_path / name)
    return tmp_path


@needs_analyze
def test_it_verifies_cleanly(units_here: Path) -> None:
    units = [units_here / n for n in ("hbgw.service", "hbgw-ping@web1.service", "hbgw-ping@web1.timer")]
    r = subprocess.run(
        [str(ANALYZE), "verify", *map(str, units)], capture_output=True, text=True, timeout=60, cwd=units_here
    )
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def exposure(unit: Path) -> float:
    r = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unit.parent,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


@needs_analyze
@pytest.mark.parametrize("variant", ["as shipped", "port 25 drop-in", "client ping"])
def test_it_scores_ok_in_systemd_analyze_security(units_here: Path, variant: str) -> None:
    unit = units_here / "hbgw.service"
    if variant == "port 25 drop-in":  # what docs/install.md says to add for email heartbeats
        text = unit.read_text().replace(
            "CapabilityBoundingSet=\nAmbientCapabilities=\n",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n",
        )
        assert "CAP_NET_BIND_SERVICE" in text
        unit.write_text(text)
    elif variant == "client ping":
        unit = units_here / "hbgw-ping@web1.service"
    assert exposure(unit) <= 3.9  # "OK" or better


@needs_analyze
@pytest.mark.parametrize(
    ("name", "period", "dropin"),
    [("web 1", 60.0, "OnUnitActiveSec=1m"), ("db1", 300.0, None), ("backup", 5400.0, "OnUnitActiveSec=1h30m")],
)
def test_the_systemd_snippet_runs_and_gives_units_that_verify(
    tmp_path: Path, name: str, period: float, dropin: str | None
) -> None:
    """The check page's "systemd timer" lines, run as they are with /etc moved into a temp dir:
    the URL lands in a 0600 file, the interval drop-in (when one is needed) is read by systemd."""
    root = tmp_path / "root"
    config = Config(data_dir=tmp_path / "data")
    with Store(config.db_path) as store:
        service = Service(store, config)
        check = service.add_check(name, period=period, grace=60)
        text = {s.key: s.text for s in service.views.snippets(check)}["systemd"]
        url = service.ping_url(check)
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines[-1].startswith("systemctl daemon-reload && systemctl enable --now hbgw-ping@")
    instance = lines[-1].rsplit("hbgw-ping@", 1)[1].removesuffix(".timer")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", instance)
    script = "\n".join(
        ["set -e", f"mkdir -p {root}/etc/systemd/system", *(ln.replace("/etc/", f"{root}/etc/") for ln in lines[:-1])]
    )
    r = subprocess.run(["sh", "-c", script], cwd=UNITS, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    url_file = root / "etc" / "hbgw-ping" / f"{instance}.url"
    assert url_file.read_text() == url + "\n"
    assert url_file.stat().st_mode & 0o077 == 0
    conf = list((root / "etc/systemd/system").glob(f"hbgw-ping@{instance}.timer.d/*.conf"))
    if dropin is None:
        assert conf == []
    else:
        assert [c.read_text() for c in conf] == [f"[Timer]\nOnUnitActiveSec=\n{dropin}\n"]
    units = root / "etc" / "systemd" / "system"
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}
    r = subprocess.run(
        [str(ANALYZE), "verify", f"hbgw-ping@{instance}.timer", f"hbgw-ping@{instance}.service"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units,
        env=env,
    )
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_it_ships_a_udev_rule_that_names_the_modem_and_keeps_modemmanager_off() -> None:
    text = (UNITS / "90-hbgw-modem.rules").read_text()
    token = r'(?:[A-Z_]+(?:\{[A-Za-z_.]+\})?)\s*(?:==|!=|\+=|:=|=)\s*"[^"]*"'
    rule = re.compile(rf"^{token}(?:\s*,\s*{token})*$")
    active = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    examples = [ln[1:] for ln in text.splitlines() if re.match(r"^#(ENV|KERNEL)\{?", ln)]
    assert len(examples) >= 5
    for line in active + examples:
        assert rule.match(line), f"not a udev rule line: {line}"
    assert 'SYMLINK+="hbgw-modem"' in text and 'GROUP="dialout"' in text
    assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in text and "usb_modeswitch" in text
    for vendor in ("12d1", "19d2", "1199"):  # Huawei, ZTE, Sierra Wireless
        assert f'ENV{{ID_VENDOR_ID}}=="{vendor}"' in text
    gotos, labels = (set(re.findall(rf'{k}="([^"]+)"', text)) for k in ("GOTO", "LABEL"))
    assert gotos and gotos <= labels


# ----------------------------------------------------------- started the way the unit does


def mdwe_supported() -> bool:
    """Can this kernel refuse writable+executable memory (prctl PR_SET_MDWE, Linux 6.3+)?"""
    r = subprocess.run([sys.executable, str(MDWE), sys.executable, "-c", "pass"], capture_output=True, timeout=30)
    return r.returncode == 0


MDWE = Path(__file__).resolve().parent / "support" / "mdwe.py"


def unit_command(cfg: Path, data: Path) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart and Environment, with its install paths mapped to the test's."""
    where = {"/etc/hbgw/hbgw.toml": str(cfg), "/var/lib/hbgw": str(data)}
    argv = [where.get(a, a) for a in shlex.split(setting(SERVICE, "ExecStart")[0])]
    assert argv[0] == INSTALLED_HBGW
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    for item in shlex.split(" ".join(setting(SERVICE, "Environment"))):
        key, _, value = item.partition("=")
        env[key] = where.get(value, value)
    env["PYTHONPATH"] = str(ROOT)
    return [sys.executable, "-m", "gateway", *argv[1:]], env


def test_it_tells_systemd_when_it_is_ready_and_feeds_the_watchdog(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(
        tmp_path / "hbgw.toml",
        data,
        extra=f"""
[smtp]
listen = "127.0.0.1:0"
[modem]
backend = "simulator"
[alerts]
sms_to = ["{OWNER}"]
""",
    )
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    argv, env = unit_command(cfg, data)
    sock_path = tmp_path / "notify"
    if len(str(sock_path)) > 100:  # AF_UNIX paths are limited to 108 bytes
        sock_path = Path(f"/tmp/hbgw-notify-{os.getpid()}")
    env.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="2000000")
    # MemoryDenyWriteExecute=yes, as far as a test can have it: the kernel's own W^X switch
    under_mdwe = mdwe_supported()
    if under_mdwe:
        argv = [sys.executable, str(MDWE), *argv]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(0.25)
        log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        try:
            messages: list[tuple[float, str]] = []

            def receive(until: str, timeout: float = 20) -> float:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                    try:
                        msg = sock.recv(4096).decode()
                    except TimeoutError:
                        continue
                    messages.append((time.monotonic(), msg))
                    if until in msg.splitlines():
                        return messages[-1][0]
                raise AssertionError(f"no {until} from the daemon; got {messages}")

            receive("READY=1")
            # READY=1 means serving: the HTTP port answers at once, no retry
            http = hbgw_run_info(data)["http"]
            assert ping(f"http://{http}/healthz") == 200
            assert ping(f"http://{http}/ping/{token_of('web1', cfg)}") == 200
            first = receive("WATCHDOG=1", timeout=5)
            second = receive("WATCHDOG=1", timeout=5)
            assert second - first < 2.0  # WATCHDOG_USEC=2 s: fed every second
            proc.send_signal(signal.SIGTERM)
            receive("STOPPING=1", timeout=10)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            sock_path.unlink(missing_ok=True)
    assert hbgw_json("check", "show", "web1", config=cfg)["status"] == "up"


def hbgw_run_info(data: Path) -> dict[str, Any]:
    from gateway.runtime.process import read_run_file

    info = read_run_file(data)
    assert info is not None
    return info


def test_it_refuses_writable_executable_memory_where_the_kernel_can(tmp_path: Path) -> None:
    """The control for the test above: under the wrapper, W+X memory really is refused."""
    if not mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    code = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    r = subprocess.run(
        [sys.executable, str(MDWE), sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert r.returncode != 0 and "PermissionError" in r.stderr


# ------------------------------------------------------------------ a gateway without modem


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A gateway whose modem device does not exist (stick unplugged, wrong udev rule)."""
    root = tmp_path_factory.mktemp("appliance")
    data = root / "data"
    cfg = write_config(
        root / "hbgw.toml",
        data,
        extra="""
[modem]
backend = "at"
device = "/dev/nonexistent"
""",
    )
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    with Daemon(data, config=cfg) as d:
        d.cfg = cfg  # type: ignore[attr-defined]
        yield d


def test_it_keeps_serving_when_the_modem_device_does_not_exist(gw: Daemon) -> None:
    wait_for(lambda: gw.log().count("modem open failed") >= 2, timeout=15, what="two modem retries")
    assert "Traceback" not in gw.log()
    assert gw.proc is not None and gw.proc.poll() is None
    assert ping(f"{gw.url}/ping/{token_of('web1', gw.cfg)}") == 200  # type: ignore[attr-defined]
    assert hbgw_json("check", "show", "web1", config=gw.cfg)["status"] == "up"  # type: ignore[attr-defined]


def test_status_says_the_modem_is_not_connected_and_exits_3(gw: Daemon) -> None:
    wait_for(
        lambda: "NOT CONNECTED" in hbgw("status", config=gw.cfg, check=False).stdout,  # type: ignore[attr-defined]
        timeout=15,
        what="a modem report",
    )
    r = hbgw("status", config=gw.cfg, check=False)  # type: ignore[attr-defined]
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"running, pid {gw.proc.pid if gw.proc else ''}, http 127.0.0.1:{gw.port}" in r.stdout
    assert "trouble:  the modem is not connected" in r.stdout
    assert "trouble:  nobody to alert" in r.stdout  # this gateway has no recipients either
    h = hbgw_json("status", config=gw.cfg, check=False)  # type: ignore[attr-defined]
    assert h["ok"] is False and h["modem"]["connected"] is False and h["modem"]["error"]


def test_it_pings_with_the_client_side_systemd_unit(gw: Daemon, tmp_path: Path) -> None:
    """hbgw-ping@.service's own ExecStart, run by sh as systemd would (specifiers expanded, the
    URL file handed over as a credential)."""
    cfg = gw.cfg  # type: ignore[attr-defined]
    shown = hbgw("check", "show", "web1", config=cfg).stdout
    assert "hbgw-ping@web1.timer" in shown and "/etc/hbgw-ping/web1.url" in shown
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "url").write_text(f"{gw.url}/ping/{token_of('web1', cfg)}\n")
    unit = UNITS / "hbgw-ping@.service"
    assert setting(unit, "LoadCredential") == ["url:/etc/hbgw-ping/%i.url"]
    command = setting(unit, "ExecStart")[0].replace("$$", "$").replace("%i", "web1").replace("%%", "%")
    before = hbgw_json("check", "show", "web1", config=cfg)["n_pings"]
    r = subprocess.run(
        shlex.split(command),
        env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert hbgw_json("check", "show", "web1", config=cfg)["n_pings"] == before + 1
    timer = {k: v for _, k, v in unit_settings(UNITS / "hbgw-ping@.timer")}
    assert timer["OnUnitActiveSec"] == "5min" and timer["WantedBy"] == "timers.target"


# ------------------------------------------------------------------------ backup / restore


def test_status_reports_a_healthy_gateway_and_what_is_down(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(
        tmp_path / "hbgw.toml",
        data,
        extra=f"""
[modem]
backend = "simulator"
[alerts]
sms_to = ["{OWNER}"]
""",
    )
    for name in ("web1", "db1"):
        hbgw("check", "add", name, "--period", "1h", config=cfg)
    hbgw("check", "pause", "db1", config=cfg)
    r = hbgw("status", config=cfg, check=False)
    assert r.returncode == 1 and "gateway:  NOT RUNNING" in r.stdout
    with Daemon(data, config=cfg) as d:
        assert ping(f"{d.url}/ping/{token_of('web1', cfg)}/fail") == 200
        wait_for(
            lambda: (
                hbgw_json("status", config=cfg, check=False)["outbox"]["waiting"] == 0
                and hbgw_json("status", config=cfg, check=False)["modem"]["connected"]
            ),
            timeout=20,
            what="the FAIL SMS sent and a modem report",
        )
        r = hbgw("status", config=cfg, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "modem:    connected, home, HBGW Demo" in r.stdout
        assert "checks:   2: 1 down, 1 paused" in r.stdout and "down:     web1" in r.stdout
        assert "trouble" not in r.stdout
    assert hbgw("status", config=cfg, check=False).returncode == 1


def test_status_tells_an_overdue_message_from_one_held_for_quiet_hours(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, alerts=AlertsConfig(sms_to=(OWNER,)))
    with Store(config.db_path) as store:
        service = Service(store, config)
        now = time.time()
        held = store.queue_message("alert", "sms", OWNER, "held", now)
        store.write(lambda conn: conn.execute("UPDATE outbox SET not_before = ? WHERE id = ?", (now + 3600, held)))
        h = service.views.health(daemon_pid=None)
        assert h["outbox"] == {"waiting": 1, "overdue_since": None, "failed_24h": 0}
        assert h["troubles"] == [
            "SMS numbers are set but no modem is configured ([modem] backend)",
            "the gateway is not running",
        ]
        store.queue_message("alert", "sms", OWNER, "stuck", now - 600)
        h = service.views.health(daemon_pid=None)
        assert h["outbox"]["waiting"] == 2 and h["outbox"]["overdue_since"]
        assert h["troubles"][-1] == "2 message(s) waiting; one is 10 min overdue"


def test_it_runs_one_daemon_per_data_dir_and_frees_it_even_after_kill_9(tmp_path: Path) -> None:
    """A second daemon on the same database would flip every check twice, send every alert
    twice and fight over the modem: it must refuse to start, clearly."""
    from gateway.runtime.process import DataDirLock

    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data)
    hbgw("check", "add", "web1", "--period", "1h", config=cfg)
    first = Daemon(data, config=cfg).start()
    try:
        assert DataDirLock.holder(data) == first.proc.pid  # type: ignore[union-attr]
        r = hbgw("serve", config=cfg, check=False, timeout=20)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"hbgw: cannot start: another hbgw serve is running on {data} (pid {first.proc.pid})" in r.stderr  # type: ignore[union-attr]
        assert ping(f"{first.url}/ping/{token_of('web1', cfg)}") == 200  # the first one is untouched
        first.kill9()
        assert DataDirLock.holder(data) is None  # the kernel let go with the process
        with Daemon(data, config=cfg) as second:
            assert ping(f"{second.url}/ping/{token_of('web1', cfg)}") == 200
        assert DataDirLock.holder(data) is None
    finally:
        first.stop()


def test_it_backs_up_while_serving_and_restores_when_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "hbgw.toml", data)
    for name in ("web1", "web2"):
        hbgw("check", "add", name, "--period", "1h", config=cfg)
    backup = tmp_path / "backups" / "hbgw-backup.sqlite3"
    backup.parent.mkdir()
    with Daemon(data, config=cfg) as d:
        url = f"{d.url}/ping/{token_of('web1', cfg)}"
        assert ping(url) == 200
        stop = threading.Event()

        def pinger() -> None:  # writes keep coming while the backup runs
            while not stop.wait(0.01):
                ping(url)

        t = threading.Thread(target=pinger)
        t.start()
        try:
            r = hbgw("backup", str(backup), config=cfg)
        finally:
            stop.set()
            t.join()
        assert "2 checks" in r.stdout
        assert backup.stat().st_mode & 0o777 == 0o600
        con = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            n_pings, stored = con.execute(
                "SELECT n_pings, (SELECT count(*) FROM pings WHERE check_id = checks.id) FROM checks"
                " WHERE name = 'web1'"
            ).fetchone()
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        finally:
            con.close()
        assert n_pings == stored >= 1  # a consistent snapshot: counter and rows agree
        hbgw("check", "add", "later", config=cfg)
        r = hbgw("restore", str(backup), config=cfg, check=False)
        assert r.returncode == 1 and f"pid {d.proc.pid if d.proc else ''}" in r.stderr
        assert "stop it first" in r.stderr

    def names() -> set[str]:
        return {c["name"] for c in hbgw_json("check", "list", config=cfg)}

    assert names() == {"web1", "web2", "later"}
    # bad backups are refused before anything is touched
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"definitely not a database" * 100)
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
    newer = tmp_path / "newer.sqlite3"
    shutil.copy(backup, newer)
    with sqlite3.connect(newer) as con:
        con.execute("PRAGMA user_version = 99")
    r = hbgw("restore", str(junk), config=cfg, check=False)
    assert r.returncode == 1 and "not an hbgw database" in r.stderr and "Traceback" not in r.stderr
    for bad, why in (
        (foreign, "not an hbgw database"),
        (newer, "newer than this hbgw"),
        (tmp_path / "missing", "no backup file"),
    ):
        with pytest.raises(StoreError, match=why):
            restore_database(bad, data / "hbgw.sqlite3")
    assert names() == {"web1", "web2", "later"}
    assert not list(data.glob("*.restore-tmp"))

    r = hbgw("restore", str(backup), config=cfg)
    assert "hbgw.sqlite3.bak" in r.stdout
    assert names() == {"web1", "web2"}
    assert hbgw_json("check", "show", "web1", config=cfg)["n_pings"] == n_pings
    con = sqlite3.connect(f"file:{data / 'hbgw.sqlite3.bak'}?mode=ro", uri=True)
    try:  # the replaced database is kept, complete (its WAL was folded in)
        assert {r[0] for r in con.execute("SELECT name FROM checks")} == {"web1", "web2", "later"}
    finally:
        con.close()
    with Daemon(data, config=cfg) as d:
        assert ping(f"{d.url}/ping/{token_of('web2', cfg)}") == 200
    assert hbgw_json("check", "show", "web2", config=cfg)["status"] == "up"


# ----------------------------------------------------------------------- start-up faults


def mount_namespace_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=30)
    return r.returncode == 0


needs_mounts = pytest.mark.skipif(
    not mount_namespace_available(), reason="needs root and unshare -m (a private mount namespace)"
)


def serve_in_namespace(setup: str, data: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``setup`` (shell, as root) in a private mount namespace, then ``hbgw serve`` on
    ``data`` there; afterwards the data dir (database, WAL and all) is copied out to
    ``tmp_path / "after"``."""
    serve = shlex.join([sys.executable, "-m", "gateway", "serve", "--data-dir", str(data), "--http", "127.0.0.1:0"])
    after = tmp_path / "after"
    after.mkdir()
    script = (
        f"set -e\n{setup}\nset +e\n{serve}\nrc=$?\n"
        f"cp -a {shlex.quote(str(data))}/. {shlex.quote(str(after))}/\nexit $rc\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HBGW_CONFIG": "/nonexistent/hbgw.toml"}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def prepared_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    hbgw("init", "--config", str(tmp_path / "init.toml"), "--data-dir", str(data))  # the database
    hbgw("check", "add", "web1", "--period", "1h", data_dir=data)
    hbgw("check", "add", "web2", "--period", "1h", data_dir=data)
    return data


def assert_intact(path: Path) -> None:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert {r[0] for r in con.execute("SELECT name FROM checks")} == {"web1", "web2"}
    finally:
        con.close()


@needs_mounts
def test_it_exits_1_with_a_clear_message_when_the_data_dir_is_read_only(tmp_path: Path) -> None:
    data = prepared_data(tmp_path)
    d = shlex.quote(str(data))
    r = serve_in_namespace(f"mount --bind {d} {d}\nmount -o remount,bind,ro {d}", data, tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "hbgw: cannot start: " in r.stderr and "read-only file system" in r.stderr
    assert_intact(tmp_path / "after" / "hbgw.sqlite3")


@needs_mounts
def test_it_exits_1_with_a_clear_message_on_a_full_disk_and_loses_nothing(tmp_path: Path) -> None:
    src = prepared_data(tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    data = disk / "data"
    q = shlex.quote
    setup = (
        f"mount -t tmpfs -o size=1m tmpfs {q(str(disk))}\nmkdir {q(str(data))}\n"
        f"cp -a {q(str(src))}/. {q(str(data))}/\n"
        f"dd if=/dev/zero of={q(str(disk / 'fill'))} bs=4k 2>/dev/null || true"
    )
    r = serve_in_namespace(setup, data, tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "hbgw: cannot start: " in r.stderr and "is full" in r.stderr
    assert_intact(tmp_path / "after" / "hbgw.sqlite3")


# ------------------------------------------------------------------ watching the watcher


def test_it_alerts_on_the_second_gateway_when_the_first_one_stops(tmp_path: Path) -> None:
    b_data = tmp_path / "b" / "data"
    b_cfg = write_config(
        tmp_path / "b.toml",
        b_data,
        extra=f"""
[modem]
backend = "simulator"
[alerts]
sms_to = ["{OWNER}"]
daily_summary = "03:00"
""",
    )
    hbgw("check", "add", "gw-a", "--period", "2s", "--grace", "1s", config=b_cfg)
    token = token_of("gw-a", b_cfg)
    with Daemon(b_data, config=b_cfg) as b:
        a_data = tmp_path / "a" / "data"
        a_cfg = write_config(
            tmp_path / "a.toml",
            a_data,
            extra=f"""
[peer]
url = "{b.url}/ping/{token}"
interval = "1s"
""",
        )
        a = Daemon(a_data, config=a_cfg).start()
        try:
            wait_for(
                lambda: hbgw_json("check", "show", "gw-a", config=b_cfg)["status"] == "up",
                timeout=15,
                interval=0.2,
                what="gw-a up on the second gateway",
            )
        finally:
            exit_code = a.stop()
        assert exit_code == 0
        assert "peer heartbeat to http://127.0.0.1:" in a.log() and token not in a.log()

        def down_sms() -> list[dict[str, Any]]:
            return [
                m
                for m in hbgw_json("sms", "outbox", config=b_cfg)
                if m["channel"] == "sms" and m["to"] == OWNER and "gw-a" in m["text"]
            ]

        messages = wait_for(down_sms, timeout=20, interval=0.3, what="a DOWN SMS for gw-a")
        assert messages[0]["text"].startswith("DOWN gw-a")
        assert hbgw_json("check", "show", "gw-a", config=b_cfg)["status"] == "down"


class _Replies(http.server.BaseHTTPRequestHandler):
    posted: list[tuple[str, bytes]] = []  # (path, body) of each POST

    def do_GET(self) -> None:
        code = 200 if self.path.startswith("/ping/good") else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK\n" if code == 200 else b"not found\n")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Replies.posted.append((self.path, body))
        self.do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def replies() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        t.join()


def test_it_pings_the_peer_and_keeps_its_token_out_of_errors(replies: str) -> None:
    assert peer.ping_once(f"{replies}/ping/good-token", 5) == 200
    assert peer.ping_once(f"{replies}/ping/good-token/fail", 5, "the SMS path is broken") == 200
    assert _Replies.posted[-1] == ("/ping/good-token/fail", b"the SMS path is broken")
    for url, why in (
        (f"{replies}/ping/SECRET-404-token", "HTTP 404"),
        (f"http://127.0.0.1:{closed_port()}/ping/SECRET-token", "refused"),
    ):
        with pytest.raises(peer.PeerError) as e:
            peer.ping_once(url, 5)
        assert why in str(e.value) and "SECRET" not in str(e.value)
    assert peer.public_part("https://user:pw@gw.example:8443/ping/SECRET?x=1") == "https://gw.example:8443"
    assert peer.public_part("http://[::1]/ping/SECRET") == "http://[::1]"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_it_logs_when_the_peer_stops_and_starts_answering_not_every_failure(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = [False, False, False, True, True, False]
    calls: list[float] = []
    done = threading.Event()

    def fake(url: str, timeout: float) -> int:
        calls.append(time.monotonic())
        ok = outcomes[len(calls) - 1] if len(calls) <= len(outcomes) else True
        if len(calls) >= len(outcomes):
            done.set()
        if not ok:
            raise peer.PeerError("connection refused")
        return 200

    async def main() -> None:
        task = asyncio.create_task(peer.run(PeerConfig(url="http://gw:8080/ping/SECRET", interval=0.02), ping=fake))
        await asyncio.to_thread(done.wait, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="gateway.runtime.peer"):
        asyncio.run(main())
    text = [r.getMessage() for r in caplog.records]
    assert len([t for t in text if "failed" in t]) == 2  # two outages, one line each
    assert len([t for t in text if "works again" in t]) == 1
    assert all("SECRET" not in t and "http://gw:8080" in t for t in text)
    assert len(calls) >= len(outcomes)


# ------------------------------------------------------------------------- daily summary


@pytest.mark.parametrize(
    ("statuses", "modem", "text"),
    [
        ({f"web{i}": Status.UP for i in range(6)}, "ok", "hbgw daily: 6 up, 0 down, modem ok. All is well."),
        ({"web1": Status.UP}, None, "hbgw daily: 1 up, 0 down. All is well."),
        ({}, "ok", "hbgw daily: no checks yet, modem ok. All is well."),
        (
            {"web1": Status.UP, "db": Status.DOWN, "nas": Status.LATE, "old": Status.PAUSED},
            "ok",
            "hbgw daily: 1 up, 1 down, 1 late, 1 paused, modem ok. Not OK: db, nas.",
        ),
        (
            {"web1": Status.UP, "new1": Status.NEW},
            "offline",
            "hbgw daily: 1 up, 0 down, 1 new, modem offline. Check the modem.",
        ),
    ],
)
def test_it_writes_the_daily_summary(statuses: dict[str, Status], modem: str | None, text: str) -> None:
    assert daily.summary_text(statuses, modem) == text


def test_it_keeps_the_daily_summary_to_one_sms() -> None:
    many = {f"server-{i:02d}.example.net": Status.DOWN for i in range(40)}
    text = daily.summary_text(many, "ok")
    assert len(text) <= 160 and text.endswith(" more.") and "server-00.example.net" in text


def test_it_schedules_the_summary_at_local_time_across_dst() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")

    def at(y: int, m: int, d: int, hour: int, minute: int) -> float:
        return dt.datetime(y, m, d, hour, minute, tzinfo=paris).timestamp()

    def local(t: float) -> tuple[int, ...]:
        d = dt.datetime.fromtimestamp(t, paris)
        return d.month, d.day, d.hour, d.minute

    assert local(daily.next_run(at(2024, 6, 1, 7, 59), 8 * 60, paris)) == (6, 1, 8, 0)
    assert local(daily.next_run(at(2024, 6, 1, 8, 0), 8 * 60, paris)) == (6, 2, 8, 0)
    # spring forward: 02:30 does not exist on 31 March, the summary comes an hour "late"
    assert local(daily.next_run(at(2024, 3, 31, 1, 0), 150, paris)) == (3, 31, 3, 30)
    # fall back: 02:30 happens twice on 27 October: one summary, at the first
    first = daily.next_run(at(2024, 10, 27, 1, 0), 150, paris)
    assert local(first) == (10, 27, 2, 30)
    assert local(daily.next_run(first, 150, paris)) == (10, 28, 2, 30)
    assert daily.next_run(first, 150, paris) - first > 86400  # not the second 02:30


def test_it_queues_the_summary_to_every_owner_once_a_day(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, alerts=AlertsConfig(sms_to=(OWNER, "+15551230001"), tz="UTC"))
    store = Store(config.db_path).open()
    try:
        service = Service(store, config)
        web1 = service.add_check("web1", period=3600)
        service.add_check("db1", period=3600)
        service.record_ping(web1.token, PingKind.SUCCESS)
        nudged: list[bool] = []
        service.on_outbox(lambda: nudged.append(True))
        assert asyncio.run(service.queue_daily_summary("2024-06-01")) == 2
        assert asyncio.run(service.queue_daily_summary("2024-06-01")) == 0  # a restart the same day
        rows = service.views.outbox()
        assert {r.recipient for r in rows} == {OWNER, "+15551230001"} and nudged == [True]
        assert {(r.kind, r.channel, r.text) for r in rows} == {
            ("summary", "sms", "hbgw daily: 1 up, 0 down, 1 new. All is well.")
        }
        assert asyncio.run(service.queue_daily_summary("2024-06-02")) == 2
    finally:
        store.close()


def test_it_starts_only_the_appliance_tasks_that_are_configured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "hbgw.sqlite3").open()
    try:

        async def main() -> list[str]:
            both = Config(
                data_dir=tmp_path,
                peer=PeerConfig(url=f"http://127.0.0.1:{closed_port()}/ping/x"),
                alerts=AlertsConfig(sms_to=(OWNER,), daily_summary=8 * 60),
            )
            assert peer.start_tasks(Service(store, Config(data_dir=tmp_path)), Config(data_dir=tmp_path)) == []
            tasks = peer.start_tasks(Service(store, both), both)

            async def first_ping_failed() -> None:
                while not any("failed" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(first_ping_failed(), timeout=10)
            assert not any(t.done() for t in tasks)  # a refused ping does not end the task
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return [t.get_name() for t in tasks]

        assert asyncio.run(main()) == ["peer", "daily-summary"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[alerts]\ndaily_summary = "25:00"\n', "[alerts] daily_summary: '25:00' is not a time of day"),
        ('[peer]\nurl = "ftp://x/ping/abc"\n', "[peer] url: must be an http:// or https:// URL"),
        ('[peer]\nurl = "http://gw:8080/ping/abc"\nintervall = "1m"\n', "[peer] intervall: unknown key"),
        ('[peer]\ninterval = "0s"\n', "[peer] interval: must be at least 1s"),
    ],
)
def test_it_rejects_bad_appliance_settings(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "hbgw.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as e:
        cfgmod.load(path)
    assert message in str(e.value)


def test_it_reads_the_appliance_settings(tmp_path: Path) -> None:
    path = tmp_path / "hbgw.toml"
    path.write_text('[alerts]\ndaily_summary = "08:05"\n[peer]\nurl = "https://gw:8080/ping/abc"\ninterval = "1m"\n')
    c = cfgmod.load(path)
    assert c.alerts.daily_summary == 8 * 60 + 5
    assert (c.peer.url, c.peer.interval, c.peer.timeout) == ("https://gw:8080/ping/abc", 60.0, 10.0)
    assert "abc" not in repr(c.peer)
    rendered = tmp_path / "init.toml"
    rendered.write_text(cfgmod.render_template(tmp_path, "k" * 24))
    assert cfgmod.load(rendered).peer.url is None  # the template's [peer] stays commented out


def test_while_the_sms_path_is_broken_the_peer_is_told_through_its_fail_url() -> None:
    """The peer (another gateway, or any Healthchecks-style ping URL) alerts its owner with its
    own modem when this gateway's daily canary did not come back."""
    seen: list[tuple[str, str | None]] = []
    broken: list[str | None] = [None, "the SMS path is broken: ...", None]
    done = threading.Event()

    def fake(url: str, timeout: float, body: str | None = None) -> int:
        seen.append((url, body))
        if len(seen) >= 3:
            done.set()
        return 200

    def trouble() -> str | None:
        return broken[min(len(seen), 2)]

    async def main() -> None:
        cfg = PeerConfig(url="http://gw:8080/ping/SECRET", interval=0.02)
        task = asyncio.create_task(peer.run(cfg, ping=fake, trouble=trouble))
        await asyncio.to_thread(done.wait, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert seen[0] == ("http://gw:8080/ping/SECRET", None)
    assert seen[1] == ("http://gw:8080/ping/SECRET/fail", "hbgw at http://gw:8080: the SMS path is broken: ...")
    assert seen[2] == ("http://gw:8080/ping/SECRET", None)  # works again: plain pings
    assert peer.fail_url("https://gw.example/ping/T?x=1") == "https://gw.example/ping/T/fail?x=1"
