"""Healthchecks' slugs and run ids: the ``/ping/<ping key>/<slug>`` half of its ping API.

A slug is what Django's ``slugify`` makes of a name (Healthchecks uses it unchanged): accents
folded to ASCII, anything but letters, digits, ``_``, ``-`` and spaces dropped, lower case,
runs of spaces and dashes one dash, dashes and underscores trimmed at both ends.
"Database Backup" → ``database-backup``.
"""

from __future__ import annotations

import re
import unicodedata

SLUG = re.compile(r"[a-z0-9_-]+")  # what a slug URL accepts (lower case only, like Healthchecks)
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SLUG_MAX = 100


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")[:SLUG_MAX]


def valid_slug(slug: str) -> bool:
    """Whether ``slug`` can be a check's explicit slug ("" is: no slug URL)."""
    return slug == "" or (len(slug) <= SLUG_MAX and SLUG.fullmatch(slug) is not None)


def valid_rid(rid: str) -> bool:
    """A run id is a UUID, as Healthchecks requires."""
    return UUID.fullmatch(rid) is not None


def normalize_tags(tags: str) -> str:
    """Tags as stored: split on white space, duplicates dropped, in the order given."""
    return " ".join(dict.fromkeys(tags.split()))
