"""The README's short install works as written: its steps come in an order that works, and its
``hbgw init`` line, run in a throwaway root, leaves a config the service user can read (root's,
mode 0640, the service user's group) and a data dir the service user owns (systemd/hbgw.service)."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import HBGW, _env

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- install:begin -->", "<!-- install:end -->"
STAND_IN = "nobody"  # the service user in the throwaway root (no hbgw user on a test machine)


def install_block() -> str:
    """The README's short install: the ```sh fence between the markers."""
    text = (ROOT / "README.md").read_text()
    if BEGIN not in text or END not in text:
        pytest.fail(f"README.md has no {BEGIN} ... {END} around its short install")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    m = re.search(r"```sh\n(.*?)```", block, re.S)
    assert m, "the install block is not a ```sh fence"
    return m.group(1)


def install_lines() -> list[str]:
    """The commands of the README's short install, without comments."""
    lines = [line.split("  #", 1)[0].strip() for line in install_block().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def service_file() -> dict[str, str]:
    """systemd/hbgw.service's [Service] settings (the last of each key)."""
    out: dict[str, str] = {}
    for line in (ROOT / "systemd" / "hbgw.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def index(lines: list[str], needle: str) -> int:
    for i, line in enumerate(lines):
        if needle in line:
            return i
    raise AssertionError(f"no install line contains {needle!r}:\n" + "\n".join(lines))


def test_it_lists_the_install_steps_in_an_order_that_works() -> None:
    lines = install_lines()
    service = service_file()
    user = index(lines, "useradd")
    init = index(lines, "hbgw init")
    edit = index(lines, "sudoedit /etc/hbgw/hbgw.toml")
    probe = index(lines, "hbgw modem probe")
    send = index(lines, "hbgw sms send")
    start = index(lines, "systemctl enable --now hbgw")
    # the user exists before init (which gives it the config and the data), [modem] is set before
    # the modem is probed, and the service starts last but the status check
    assert user < init < edit < probe < send < start < index(lines, "hbgw status")
    assert f" {service['User']}" in lines[user] and "--groups dialout" in lines[user]
    assert service["SupplementaryGroups"] == "dialout"
    # the paths the service uses, and what the edit step must set
    exec_start = shlex.split(service["ExecStart"])
    config = exec_start[exec_start.index("--config") + 1]
    data_dir = exec_start[exec_start.index("--data-dir") + 1]
    assert f"--config {config}" in lines[init] and f"--data-dir {data_dir}" in lines[init]
    block = install_block()
    assert "[modem]" in block and "base_url" in block  # said at the edit step
    assert "0600" not in block and "chmod" not in block  # init sets the modes itself
    assert "daemon-reload" in lines[start]


@pytest.fixture
def throwaway_root() -> Iterator[Path]:
    """An empty directory standing for /, open to every user (pytest's own are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hbgw-install-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_readme_line(line: str, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """One README line (``sudo hbgw ...``) in the throwaway root: paths under it, our hbgw."""
    argv = shlex.split(line)
    if argv[0] == "sudo":
        argv = argv[1:]
    assert argv[0] == "hbgw", line
    args = [str(root) + a if a.startswith(("/etc/", "/var/")) else a for a in argv[1:]]
    return subprocess.run([*HBGW, *args, *extra], capture_output=True, text=True, timeout=60, env=_env())


def as_user(uid: int, gid: int, action: str, path: Path) -> bool:
    """Whether user ``uid`` can do ``action`` ("read" a file; "use" a data dir: open its
    database and write a file there), tried in a forked child that drops root."""
    pid = os.fork()
    if pid == 0:  # the child: no exec (the test's Python may live where that user cannot go)
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if action == "read":
                tomllib.loads(path.read_text())
            else:
                conn = sqlite3.connect(path / "hbgw.sqlite3")
                conn.execute("PRAGMA user_version").fetchone()
                conn.close()
                (path / "probe").write_text("x")
            code = 0
        except BaseException:  # anything means "cannot"
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the install runs as root (chown)")
def test_it_leaves_a_config_and_data_dir_the_service_user_can_use(throwaway_root: Path) -> None:
    lines = install_lines()
    r = run_readme_line(lines[index(lines, "hbgw init")], throwaway_root, "--user", STAND_IN)
    assert r.returncode == 0, r.stderr
    config, data = throwaway_root / "etc/hbgw/hbgw.toml", throwaway_root / "var/lib/hbgw"
    user = pwd.getpwnam(STAND_IN)
    group = grp.getgrgid(user.pw_gid).gr_name
    assert f"wrote {config} (mode 0640, root:{group}); data in {data} (owned by {STAND_IN})" in r.stdout
    c = config.stat()
    assert (stat.S_IMODE(c.st_mode), c.st_uid, c.st_gid) == (0o640, 0, user.pw_gid)
    d = data.stat()
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid) == (0o750, user.pw_uid, user.pw_gid)
    assert all(p.stat().st_uid == user.pw_uid for p in data.iterdir())
    # the service user reads the config and uses the database; other users read neither
    assert as_user(user.pw_uid, user.pw_gid, "read", config)
    assert as_user(user.pw_uid, user.pw_gid, "use", data)
    stranger = pwd.getpwnam("daemon")
    assert not as_user(stranger.pw_uid, stranger.pw_gid, "read", config)
    # the README's status line, as root, on that data: not running (exit 1), no error
    r = run_readme_line(lines[index(lines, "hbgw status")], throwaway_root)
    assert r.returncode == 1 and "NOT RUNNING" in r.stdout, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the install runs as root (chown)")
def test_it_warns_when_the_service_user_does_not_exist_yet(throwaway_root: Path) -> None:
    config = throwaway_root / "hbgw.toml"
    r = subprocess.run(
        [*HBGW, "init", "--config", str(config), "--data-dir", str(throwaway_root / "data"), "--user", "no-such-user"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert r.returncode == 0
    assert "no user 'no-such-user' yet" in r.stderr and "useradd" in r.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
