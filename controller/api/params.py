"""Query and header parameters the /v1 route modules share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of a page")]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)]
