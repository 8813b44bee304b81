"""Keyword filters: which kind of heartbeat a message is, from its subject and body text.

Pure: no I/O, no clock. Written once and used by every edge that classifies a message by its
words (today the SMTP listener, :mod:`gateway.intake.mail`); Healthchecks keeps two copies of this logic.

A check's filters are stored as JSON in ``checks.filters`` (NULL: no filters)::

    {"subject": true, "body": false,
     "success": ["ok"], "fail": ["FAIL", "error"], "start": ["started"]}

- ``subject`` / ``body``: where to look (defaults: subject yes, body no).
- ``success`` / ``fail`` / ``start``: keywords; a keyword matches when it occurs anywhere in the
  searched text, ignoring case ("error" matches "Error:" and "errors").
- Precedence: fail, then success, then start (a mail saying "3 errors, backup ok" is a failure).
- No keyword matched: a success if the ``success`` list is empty (so ``{"fail": ["FAIL"]}``
  means "FAIL is a failure, anything else is fine"); otherwise a ``log`` heartbeat, recorded but
  changing nothing (the mail did not say it succeeded).
- No filters, or neither subject nor body searched, or no keywords at all: every mail is a success.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.model import PingKind

MAX_KEYWORDS = 20  # per list
MAX_KEYWORD_LEN = 100
_KINDS = ("success", "fail", "start")
_KEYS = frozenset(("subject", "body", *_KINDS))


class FilterError(ValueError):
    """Filters that cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class Filters:
    """Validated keyword filters of one check (see the module docstring for the meaning)."""

    subject: bool = True
    body: bool = False
    success: tuple[str, ...] = ()
    fail: tuple[str, ...] = ()
    start: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether these filters can change anything (else every mail is a success)."""
        return (self.subject or self.body) and bool(self.success or self.fail or self.start)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "body": self.body,
            "success": list(self.success),
            "fail": list(self.fail),
            "start": list(self.start),
        }


def parse_filters(data: Any) -> Filters:
    """Validate a filters mapping (from JSON, a form or the API) into :class:`Filters`.

    Keywords are stripped; duplicates (ignoring case) are dropped. Raises FilterError for unknown
    keys, non-boolean ``subject``/``body``, or keyword lists that are not lists of 1-100
    character strings (at most 20 per list).
    """
    if not isinstance(data, Mapping):
        raise FilterError("filters must be an object")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise FilterError(f"unknown filter key {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS))})")
    where = {}
    for key in ("subject", "body"):
        value = data.get(key, key == "subject")
        if not isinstance(value, bool):
            raise FilterError(f"{key!r} must be true or false")
        where[key] = value
    lists = {kind: _keywords(kind, data.get(kind, [])) for kind in _KINDS}
    return Filters(subject=where["subject"], body=where["body"], **lists)


def _keywords(kind: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise FilterError(f"{kind!r} must be a list of keywords")
    out: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise FilterError(f"{kind!r} keywords must be strings")
        word = item.strip()
        if not word:
            raise FilterError(f"{kind!r} contains an empty keyword")
        if len(word) > MAX_KEYWORD_LEN:
            raise FilterError(f"{kind!r} keywords have at most {MAX_KEYWORD_LEN} characters")
        if word.casefold() not in seen:
            seen.add(word.casefold())
            out.append(word)
    if len(out) > MAX_KEYWORDS:
        raise FilterError(f"{kind!r} has at most {MAX_KEYWORDS} keywords")
    return tuple(out)


def loads(text: str | None) -> Filters | None:
    """The filters stored as ``text`` (None or empty: no filters). Raises FilterError if corrupt."""
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise FilterError("stored filters are not valid JSON") from None
    return parse_filters(data)


def dumps(filters: Filters | None) -> str | None:
    """The canonical stored form of ``filters`` (None stays None)."""
    if filters is None:
        return None
    return json.dumps(filters.to_dict(), ensure_ascii=False, separators=(",", ":"))


def classify(filters: Filters | None, subject: str, body: str) -> PingKind:
    """The kind of heartbeat a message with ``subject`` and ``body`` is, under ``filters``.

    SUCCESS, FAIL or START by keyword, or LOG when success keywords are required and none
    matched (see the module docstring for the rules).
    """
    if filters is None or not filters.active:
        return PingKind.SUCCESS
    parts = []
    if filters.subject:
        parts.append(subject)
    if filters.body:
        parts.append(body)
    text = "\n".join(parts).casefold()

    def found(words: tuple[str, ...]) -> bool:
        return any(w.casefold() in text for w in words)

    if found(filters.fail):
        return PingKind.FAIL
    if found(filters.success):
        return PingKind.SUCCESS
    if found(filters.start):
        return PingKind.START
    return PingKind.LOG if filters.success else PingKind.SUCCESS
