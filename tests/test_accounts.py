"""Logins: the throttle holds under concurrent guesses, and a success forgets the failures.

A real store (its writer thread serializes the reservations) and real scrypt checks; the
threads are real too, so a check-then-record race would show.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.accounts import LOGIN_MAX_FAILURES, LoginRefused
from gateway.config import Config
from gateway.service import Service
from gateway.store import Store

PASSWORD = "the-right-password"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    config = Config(data_dir=tmp_path)
    with Store(config.db_path) as store:
        service = Service(store, config)
        service.accounts.set_password(PASSWORD)
        yield service


def attempt(service: Service, password: str, addr: str) -> str:
    try:
        service.accounts.login(password, addr)
    except LoginRefused as e:
        return str(e)
    return "ok"


def test_it_checks_no_more_passwords_than_the_limit_under_40_concurrent_guesses(service: Service) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(lambda _: attempt(service, "wrong guess", "203.0.113.7"), range(40)))
    assert answers.count("wrong password") == LOGIN_MAX_FAILURES
    assert answers.count("too many failed attempts") == 40 - LOGIN_MAX_FAILURES
    # even the right password is refused now, from that address; another address is not affected
    assert attempt(service, PASSWORD, "203.0.113.7") == "too many failed attempts"
    assert attempt(service, PASSWORD, "198.51.100.9") == "ok"


def test_it_forgets_the_failures_after_a_success(service: Service) -> None:
    for _ in range(LOGIN_MAX_FAILURES - 1):
        assert attempt(service, "wrong", "203.0.113.8") == "wrong password"
    assert attempt(service, PASSWORD, "203.0.113.8") == "ok"
    for _ in range(LOGIN_MAX_FAILURES):
        assert attempt(service, "wrong", "203.0.113.8") == "wrong password"
    assert attempt(service, "wrong", "203.0.113.8") == "too many failed attempts"
