"""Authentication and the audit trail, as one ASGI middleware in front of the API.

Every request under /v1 is authenticated (unless auth is off), its principal is set for the
core to scope by team, and every state-changing call is written to the audit log with who,
what, when and from where.
"""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.api.problems import PROBLEM, problem_body
from controller.auth.oidc import OidcVerifier
from controller.auth.principal import LOCAL, Principal, set_current
from controller.auth.tokens import PREFIX, verify_token
from controller.config import Settings
from controller.store.database import Database
from controller.store.schema import AuditRow

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
MAX_BODY_BYTES = 1024 * 1024
PROTECTED = ("/v1", "/ui")
# The console's login form and its own script and style are open: the way in needs them.
OPEN = ("/ui/login", "/ui/static/")
# The console keeps the token of a browser login in this cookie; it counts under /ui only
# (the pages and their own data routes, all read-only), so no cross-site form can use it to
# change state through /v1.
COOKIE = "tracectl_token"


class Authenticator:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.modes = {m.strip() for m in settings.auth.split(",") if m.strip()}
        self.db = db
        self.oidc = None
        if "oidc" in self.modes:
            if not (settings.oidc_jwks and settings.oidc_issuer and settings.oidc_audience):
                raise ValueError("auth=oidc needs TRACECTL_OIDC_JWKS, _ISSUER and _AUDIENCE")
            self.oidc = OidcVerifier(
                settings.oidc_jwks, settings.oidc_issuer, settings.oidc_audience
            )

    @property
    def enabled(self) -> bool:
        return bool(self.modes - {"none"})

    def authenticate(self, authorization: str | None) -> Principal | None:
        if not self.enabled:
            return LOCAL
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        if "tokens" in self.modes and token.startswith(PREFIX):
            return verify_token(self.db, token)
        if self.oidc is not None:
            return self.oidc.verify(token)
        return None


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, db: Database) -> None:
        self.app = app
        self.auth = authenticator
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED):
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if int(headers.get("content-length") or 0) > MAX_BODY_BYTES:
            await _problem(
                scope,
                send,
                413,
                "Request too large",
                f"request bodies are limited to {MAX_BODY_BYTES} bytes",
            )
            return
        principal = self.auth.authenticate(_authorization(scope["path"], headers))
        if principal is None and scope["path"].startswith(OPEN):
            await self.app(scope, receive, send)
            return
        if principal is None and scope["path"].startswith("/ui") and scope["method"] == "GET":
            await _to_login(scope, send)
            return
        if principal is None:
            await _problem(
                scope,
                send,
                401,
                "Unauthorized",
                "a valid bearer token is required (Authorization: Bearer <token>)",
                [(b"www-authenticate", b'Bearer realm="tracectl"')],
            )
            return
        set_current(principal)
        status: dict[str, int] = {}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, record_status)
        if scope["method"] in STATE_CHANGING:
            self._audit(scope, principal, status.get("code", 0))

    def _audit(self, scope: Scope, principal: Principal, status: int) -> None:
        client = scope.get("client")
        source = f"{client[0]}:{client[1]}" if client else None
        with self.db.write() as session:
            session.add(
                AuditRow(
                    actor=f"{principal.name}@{principal.team}",
                    action=scope["method"],
                    target=scope["path"],
                    source=source,
                    detail={
                        "status": status,
                        "role": principal.role,
                        "query": scope.get("query_string", b"").decode()[:512],
                    },
                )
            )


def _authorization(path: str, headers: dict[str, str]) -> str | None:
    """The Authorization header, else under /ui the console's login cookie as a bearer."""
    given = headers.get("authorization")
    if given or not path.startswith("/ui"):
        return given
    cookie = SimpleCookie()
    cookie.load(headers.get("cookie", ""))
    token = cookie.get(COOKIE)
    return f"Bearer {token.value}" if token else None


async def _to_login(scope: Scope, send: Send) -> None:
    query = scope.get("query_string", b"").decode()
    target = scope["path"] + (f"?{query}" if query else "")
    location = "/ui/login?" + urlencode({"next": target})
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _problem(
    scope: Scope,
    send: Send,
    status: int,
    title: str,
    detail: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(problem_body(status, title, detail, scope["path"])).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM.encode()),
                (b"content-length", str(len(payload)).encode()),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
