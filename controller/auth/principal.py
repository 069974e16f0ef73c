"""The caller of the current request, visible to the core through a context variable."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

ADMIN = "admin"
MEMBER = "member"


@dataclass(frozen=True)
class Principal:
    name: str
    team: str
    role: str = MEMBER

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def may_see(self, team: str) -> bool:
        return self.is_admin or team == self.team


# With auth off (the embedded default) the one local user administers the default team.
LOCAL = Principal(name="local", team="default", role=ADMIN)
_current: ContextVar[Principal] = ContextVar("tracectl_principal", default=LOCAL)


def current() -> Principal:
    return _current.get()


def set_current(principal: Principal) -> None:
    _current.set(principal)
