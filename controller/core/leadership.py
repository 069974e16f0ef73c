"""Leadership: campaign for the leader lease, and run the leader's roles while holding it.

Every replica serves the API; the one holding the lease (ports.LeaderElection) runs the
roles (the supervisor loops, the log checks, OpenLineage emission). Winning the lease starts
a new term in the store (`fencing.take_over`: the epoch grows), and the roles write under
that term's `Fence`. The lease is renewed every third of its length; a renewal refused, a
write refused (`Deposed`), or no renewal for a whole lease length ends the term: the roles
stop and the replica campaigns again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from controller.core.fencing import Fence, take_over
from controller.ports import LeaderElection
from controller.store.database import Database

log = logging.getLogger("tracectl.leadership")
RETRY_S = 1.0  # how often a follower tries for the lease


class Role(Protocol):
    def lead(self, fence: Fence) -> None: ...

    def follow(self) -> None: ...


class Leadership:
    def __init__(
        self,
        election: LeaderElection,
        db: Database,
        holder: str,
        roles: Sequence[Role],
        lease_s: float,
    ) -> None:
        self.election, self.db, self.holder, self.roles = election, db, holder, roles
        self.renew_s = lease_s / 3
        self.lease_s = lease_s
        self.retry_s = min(RETRY_S, self.renew_s)
        self.fence: Fence | None = None
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._renewed = 0.0
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self.fence is not None and not self.fence.lost.is_set()

    def start(self) -> None:
        """One try now (a lone replica leads before it serves), then keep at it."""
        self._campaign()
        self._thread = threading.Thread(target=self._run, name="tracectl-leadership", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.fence is not None:
            self._follow()
            self.election.release()  # a clean stop: the next replica need not wait

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                log.exception("leader election step failed; retrying")
            self._nudge.wait(self.renew_s if self.fence else self.retry_s)
            self._nudge.clear()

    def _step(self) -> None:
        if self.fence is None:
            self._campaign()
        elif self.fence.lost.is_set() or not self._renew():
            self._follow()

    def _campaign(self) -> None:
        try:
            won = self.election.acquire()
        except Exception:
            log.warning("could not try for the leader lease", exc_info=True)
            return
        if not won or self._stop.is_set():
            return
        self._renewed = time.monotonic()
        fence = Fence(take_over(self.db, self.holder), on_lost=self._nudge.set)
        log.info("%s leads, epoch %d", self.holder, fence.epoch)
        self.fence = fence
        for role in self.roles:
            try:
                role.lead(fence)
            except Exception:  # e.g. Deposed in reconcile(): the next step steps down
                log.exception("starting %r failed; stepping down", role)
                fence.lost.set()
                return

    def _renew(self) -> bool:
        """Whether this replica still leads: renewed, or a renewal failed but the lease it
        last renewed has not run out yet (the store or API server may be back in time)."""
        try:
            if not self.election.renew():
                return False
        except Exception:
            log.warning("could not renew the leader lease", exc_info=True)
            return time.monotonic() - self._renewed < self.lease_s
        self._renewed = time.monotonic()
        return True

    def _follow(self) -> None:
        fence, self.fence = self.fence, None
        log.warning("%s steps down (epoch %s)", self.holder, fence.epoch if fence else None)
        for role in reversed(self.roles):
            try:
                role.follow()
            except Exception:
                log.exception("stopping %r failed", role)
