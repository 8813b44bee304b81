"""What an edit may change on a check, checked before anything is written (pure).

The schedule fields are checked by :mod:`gateway.rules.schedule`; the fields here are the ones
Healthchecks also keeps (slug, tags, desc, manual_resume, methods), a check's name and a ping
token brought from elsewhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from gateway.errors import ValidationError
from gateway.rules.slugs import SLUG_MAX, normalize_tags, valid_slug

PATCHABLE = (
    "period",
    "grace",
    "cron",
    "tz",
    "repeat",
    "sms_enabled",
    "email_enabled",
    "filters",
    "ladder",
    "name",
    "slug",
    "tags",
    "desc",
    "manual_resume",
    "methods",
)
NAME_MAX = 200
DESC_MAX = 10_000
TAGS_MAX = 500
# A ping token: URL- and address-safe. Ours are 24 characters (144 bits); Healthchecks' are
# UUIDs (36 with dashes); Uptime Kuma's push tokens 32 by default, shorter when users chose.
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{7,127}")


def validate_name(name: str) -> str:
    """A check name as stored: trimmed, 1-200 characters, no control characters, no slash."""
    name = name.strip()
    if not name:
        raise ValidationError("name", "a name is required")
    if len(name) > NAME_MAX:
        raise ValidationError("name", f"a name has at most {NAME_MAX} characters")
    if "/" in name or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise ValidationError("name", "a name cannot contain '/' or control characters")
    if set(name) == {"."}:  # "." and ".." vanish from URLs
        raise ValidationError("name", "a name cannot be only dots")
    return name


def validate_token(token: str) -> str:
    """A ping token brought from elsewhere (a Healthchecks UUID, an Uptime Kuma push token)."""
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise ValidationError("token", "8-128 characters of A-Z a-z 0-9 _ -, not starting with - or _")
    return token


def validate(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` with the fields of this module checked and normalized; others unchanged.
    Raises ValidationError naming the field."""
    out = dict(changes)
    if "name" in out:
        out["name"] = validate_name(_text(out, "name"))
    if "slug" in out:
        slug = _text(out, "slug").strip()
        if not valid_slug(slug):
            raise ValidationError("slug", f"lower-case a-z 0-9 _ - only, at most {SLUG_MAX} characters")
        out["slug"] = slug
    if "tags" in out:
        tags = normalize_tags(_text(out, "tags"))
        if len(tags) > TAGS_MAX:
            raise ValidationError("tags", f"at most {TAGS_MAX} characters in all")
        out["tags"] = tags
    if "desc" in out:
        desc = _text(out, "desc")
        if len(desc) > DESC_MAX:
            raise ValidationError("desc", f"at most {DESC_MAX} characters")
        out["desc"] = desc
    if "manual_resume" in out and not isinstance(out["manual_resume"], bool):
        raise ValidationError("manual_resume", "true or false")
    if "methods" in out:
        methods = _text(out, "methods")
        if methods not in ("", "POST"):
            raise ValidationError("methods", 'either "" (HEAD, GET and POST) or "POST"')
    return out


def _text(changes: Mapping[str, Any], field: str) -> str:
    value = changes[field]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    return value


def patch_event(fields: set[str], changes: Mapping[str, Any]) -> str:
    """The event a patch records: what changed, when it is one thing."""
    if fields == {"sms_enabled"}:
        return "sms on" if changes["sms_enabled"] else "sms off"
    if fields == {"email_enabled"}:
        return "email on" if changes["email_enabled"] else "email off"
    if fields == {"filters"}:
        return "filters"
    if fields and fields <= {"period", "grace", "cron", "tz"}:
        return "schedule"
    if fields == {"name"}:
        return "renamed"
    return "edited"
