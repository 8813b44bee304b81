"""Check dependencies: a check (a child) can depend on others (its parents, e.g. the router
in front of it). A child that goes down while a parent is down is "down (behind router)": it
tells nobody on its own, the parent's messages carry it instead ("DOWN router (3 behind it
silent: web1, db1, nas)", "UP router after 12 min; web1, db1 back; nas still silent"). When the
parent recovers and the child does not, the child alerts on its own after its own grace.

Stored as rows of ``check_parents(child_id, parent_id)`` (gateway.store.schema v10). Pure: the
cycle check, who is behind whom, and the parts of the texts; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.model import Status

SMS_CHARS = 160


class CycleError(ValueError):
    """Parents that would make a check depend on itself; ``path`` names the loop."""

    def __init__(self, path: Sequence[str]) -> None:
        self.path = tuple(path)
        super().__init__(f"a dependency cycle: {' → '.join(self.path)}")


@dataclass(frozen=True)
class Parent:
    """A parent as a child's decision sees it: its name and its status now."""

    name: str
    status: Status


@dataclass(frozen=True)
class Child:
    """A child as its parent's message sees it at send time: its name, its status now, and
    whether it was part of the parent's latest outage (down in it, or back after it began)."""

    name: str
    status: Status
    involved: bool = True


def find_cycle(child: str, parents: Iterable[str], graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """The loop that giving ``child`` these ``parents`` would make, as a path of names starting
    and ending at ``child`` (["router", "web1", "router"]), or None. ``graph``: every other
    check's parents (``child``'s own entry, if any, is replaced by ``parents``). Names compare
    without case, as check names do."""
    key = child.casefold()
    edges: dict[str, list[str]] = {k.casefold(): list(v) for k, v in graph.items()}
    edges[key] = list(parents)
    # depth-first search from each new parent for a path back to the child
    for first in edges[key]:
        path = _path(first, key, edges, set())
        if path is not None:
            return [child, *path]
    return None


def _path(start: str, goal: str, edges: Mapping[str, list[str]], seen: set[str]) -> list[str] | None:
    if start.casefold() == goal:
        return [start]
    if start.casefold() in seen:
        return None
    seen.add(start.casefold())
    for nxt in edges.get(start.casefold(), []):
        rest = _path(nxt, goal, edges, seen)
        if rest is not None:
            return [start, *rest]
    return None


def check_parents(child: str, parents: Iterable[str], graph: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """``parents`` cleaned (no blanks, no repeats); raises CycleError when they make a loop
    (a check naming itself included)."""
    clean = tuple(dict.fromkeys(p.strip() for p in parents if p.strip()))
    cycle = find_cycle(child, clean, graph)
    if cycle is not None:
        raise CycleError(cycle)
    return clean


def parse_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"router, switch"`` or ``["router"]`` (or "" / None: none) as a tuple of names."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))


def behind(parents: Sequence[Parent]) -> tuple[str, ...]:
    """The names of the parents that are down now: a down child is behind them."""
    return tuple(p.name for p in parents if p.status is Status.DOWN)


def is_behind(parents: Sequence[Parent]) -> bool:
    return any(p.status is Status.DOWN for p in parents)


def label(status: Status, behind_names: Sequence[str]) -> str:
    """What the pages say of a check: "down (behind router)" for a down child of a down parent."""
    if status is Status.DOWN and behind_names:
        return f"down (behind {', '.join(behind_names)})"
    return status.value


def names(items: Sequence[str], limit: int) -> str:
    """``items`` joined by ", " within ``limit`` characters, the rest as "+N more"."""
    out = ""
    for i, n in enumerate(items):
        piece = n if not out else ", " + n
        tail = f" +{len(items) - i - 1} more" if i < len(items) - 1 else ""
        if len(out) + len(piece) + len(tail) > limit and out:
            return out + f" +{len(items) - i} more"
        out += piece
    return out


def silent_part(children: Sequence[Child], limit: int = 60) -> str:
    """ "3 behind it silent: web1, db1, nas" (the children down now), or "" when none is."""
    down = [c.name for c in children if c.status is Status.DOWN]
    if not down:
        return ""
    return f"{len(down)} behind it silent: {names(down, limit)}"


def down_text(text: str, parent: str, children: Sequence[Child]) -> str:
    """A parent's DOWN (or FAIL, or STILL DOWN) text with the children silent behind it:
    "DOWN router: no heartbeat..." becomes "DOWN router (3 behind it silent: web1, db1, nas):
    no heartbeat..."; kept within one SMS (fewer names, then none: just the count)."""
    for limit in (60, 30, 0):
        part = silent_part(children, limit)
        if not part:
            return text
        if limit == 0:
            part = part.split(":")[0]
        new = _insert(text, parent, f" ({part})")
        if len(new) <= SMS_CHARS:
            return new
    return new


def _insert(text: str, parent: str, part: str) -> str:
    for word in ("STILL DOWN ", "DOWN ", "FAIL "):
        head = word + parent
        if text.startswith(head):
            return head + part + text[len(head) :]
    return text + part


def up_text(text: str, children: Sequence[Child]) -> str:
    """A parent's UP with its children's state now: "UP router after 12 min; web1, db1 back;
    nas still silent" (the children that were part of its outage), within one SMS."""
    involved = [c for c in children if c.involved]
    back = [c.name for c in involved if c.status is not Status.DOWN]
    silent = [c.name for c in involved if c.status is Status.DOWN]
    if not back and not silent:
        return text
    room = SMS_CHARS - len(text)
    for limit in (60, 30, 12):
        parts = []
        if back:
            parts.append(f"{names(back, limit)} back")
        if silent:
            parts.append(f"{names(silent, limit)} still silent")
        tail = "; " + "; ".join(parts)
        if len(tail) <= room:
            return text + tail
    counts = []
    if back:
        counts.append(f"{len(back)} back")
    if silent:
        counts.append(f"{len(silent)} still silent")
    return text + "; " + "; ".join(counts)


def superseded(kind: str, status: Status | None, behind_names: Sequence[str]) -> bool:
    """Whether a row of ``kind`` for a check that is ``status`` now, behind ``behind_names``
    (its parents down now), has nothing left to say: its DOWN, reminder or ladder step while a
    parent is down is told by the parent's messages."""
    return kind in ("down", "fail", "reminder", "escalation", "call") and status is Status.DOWN and bool(behind_names)
