"""/v1/shares: grants that let another team name one of our artifacts as a task input."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response

from controller.api.contract import errors
from controller.auth import grants
from controller.auth.grants import Share, ShareCreate
from controller.auth.principal import current
from controller.auth.scope import Scope
from controller.core.service import ControllerService


def build_router(service: ControllerService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["shares"])

    @router.post(
        "/shares",
        response_model=Share,
        status_code=201,
        responses={200: {"model": Share, "description": "the same grant, made before"}},
    )
    def create_share(body: ShareCreate, response: Response) -> Share:
        """Grant a team the use of an artifact the caller's team stored (audited)."""
        share, created = grants.grant(service.db, current(), body)
        if not created:
            response.status_code = 200
        return share

    @router.get("/shares", response_model=list[Share])
    def list_shares(state: Literal["active", "all"] = "active") -> list[Share]:
        """Grants the caller's team made or received, newest first."""
        return grants.shares(service.db, Scope.current(), state == "active")

    @router.delete("/shares/{share_id}", response_model=Share, responses=errors(403, 404))
    def revoke_share(share_id: int) -> Share:
        """Revoke a grant (the team that made it, or an admin); audited."""
        return grants.revoke(service.db, current(), share_id)

    return router
