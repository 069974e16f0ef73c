"""/v1/leases, /v1/resources and /v1/queue: the lease system as inspectable records."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from controller.api import responses as out
from controller.api.contract import errors
from controller.auth.principal import LOCAL, current
from controller.auth.scope import Scope
from controller.core.service import ControllerService
from controller.errors import Conflict, Forbidden, InvalidInput, NotFound
from controller.scheduling import lease_views
from controller.scheduling.leases import (
    LeaseAlreadyReleased,
    force_release,
    lease_record,
)

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Role = Annotated[str | None, Header(alias="X-Tracectl-Role", max_length=64)]
Actor = Annotated[str | None, Header(alias="X-Tracectl-Actor", max_length=256)]


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="why, for the audit log")


def build_router(service: ControllerService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["leases"])

    @router.get("/leases", response_model=out.LeasePage)
    def list_leases(
        state: Literal["active", "all"] = "active",
        task_id: str | None = None,
        resource: str | None = None,
        limit: Limit = 100,
        cursor: Annotated[str | None, Query(max_length=32)] = None,
    ) -> dict[str, Any]:
        """Leases by id; `cursor` is the `next_cursor` of the previous page."""
        after = 0
        if cursor:
            if not cursor.isdigit():
                raise InvalidInput(["query", "cursor"], "not a cursor this API returned")
            after = int(cursor)
        with service.db.read() as session:
            return lease_views.list_leases(
                session, Scope.current(), state == "active", task_id, resource, limit, after
            )

    @router.get("/resources", response_model=out.Resources)
    def resources() -> dict[str, Any]:
        with service.db.read() as session:
            return lease_views.resources(session, Scope.current())

    @router.get("/queue", response_model=out.Queue)
    def queue() -> dict[str, Any]:
        with service.db.read() as session:
            return lease_views.queue(session, service.admitter, Scope.current())

    @router.post(
        "/leases/{lease_id}/release", response_model=out.Lease, responses=errors(403, 404, 409)
    )
    def release(
        lease_id: int, body: ReleaseRequest, role: Role = None, actor: Actor = None
    ) -> dict[str, Any]:
        """Admin force-release, recorded in the audit log.

        Needs an admin caller (an admin token when auth is on) and, as a deliberate
        confirmation, the header X-Tracectl-Role: admin.
        """
        principal = current()
        if not principal.is_admin or role != "admin":
            raise Forbidden(
                "force-releasing a lease needs the admin role "
                "(an admin token and the header X-Tracectl-Role: admin)"
            )
        actor = actor if principal is LOCAL else f"{principal.name}@{principal.team}"
        try:
            with service.db.write() as session:
                lease = force_release(session, lease_id, body.reason, actor or "admin")
                if lease is None:
                    raise NotFound(f"lease {lease_id} does not exist")
                record = lease_record(lease)
        except LeaseAlreadyReleased as exc:
            raise Conflict(str(exc)) from exc
        service._wake()  # the freed unit may admit a waiting task now
        return record

    return router
