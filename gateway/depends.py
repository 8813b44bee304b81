"""Check dependencies as the edges use them (``service.deps``): set a check's parents, read
them, and say who is behind whom. The rules are :mod:`gateway.rules.dependencies`; the store
keeps the pairs in ``check_parents`` and the lifecycle gets the parents' states when it
decides a check that is down (:func:`gateway.store.tx.decide_check`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gateway.errors import ValidationError
from gateway.model import Check, Status
from gateway.rules import dependencies as rules
from gateway.store import NotFound

if TYPE_CHECKING:
    from gateway.service import Service


class Dependencies:
    """A check's parents (``service.deps``)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def set(self, name: str, parents: str | Iterable[str] | None) -> Check:
        """Make ``parents`` (names, or "router, switch"; "" or None: none) the parents of
        ``name``. Raises NotFound (the check), ValidationError (``depends_on``: an unknown
        parent, a cycle, with its path)."""
        check = self.service.get_check(name)
        wanted = rules.parse_list(parents)
        try:
            self.service.store.set_parents(check.name, wanted, self.service.clock())
        except rules.CycleError as e:
            raise ValidationError("depends_on", str(e)) from None
        except NotFound as e:
            if str(e.args[0] if e.args else "") == check.name:
                raise
            raise ValidationError("depends_on", f"no check named {e.args[0]!r}") from None
        return self.service.get_check(check.name)

    def parents(self, check: Check) -> list[str]:
        return [n for n, _ in self.service.store.parents_of(check.id)]

    def behind(self, check: Check) -> list[str]:
        """The parents of ``check`` that are down now (it is "behind" them when it is down)."""
        return [n for n, st in self.service.store.parents_of(check.id) if st == Status.DOWN.value]

    def label(self, check: Check, status: Status) -> str:
        """ "down (behind router)", or the status as it is."""
        if status is not Status.DOWN:
            return status.value
        return rules.label(status, self.behind(check))
