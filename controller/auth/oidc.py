"""OIDC bearer JWTs, checked against a JWKS document (file path or https URL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controller.auth.principal import ADMIN, MEMBER, Principal


class OidcVerifier:
    def __init__(
        self,
        jwks: str,
        issuer: str,
        audience: str,
        team_claim: str = "team",
        admin_group: str = "tracectl-admins",
    ) -> None:
        import jwt

        self.issuer, self.audience = issuer, audience
        self.team_claim, self.admin_group = team_claim, admin_group
        if jwks.startswith("https://"):
            self._client: Any = jwt.PyJWKClient(jwks)
            self._keys: Any = None
        else:
            self._client = None
            self._keys = jwt.PyJWKSet.from_dict(json.loads(Path(jwks).read_text()))

    def verify(self, token: str) -> Principal | None:
        import jwt

        try:
            if self._client is not None:
                key = self._client.get_signing_key_from_jwt(token).key
            else:
                kid = jwt.get_unverified_header(token).get("kid")
                key = next(k.key for k in self._keys.keys if kid is None or k.key_id == kid)
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256", "ES256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, StopIteration, KeyError, ValueError):
            return None
        team = claims.get(self.team_claim)
        if not isinstance(team, str) or not team:
            return None
        groups = claims.get("groups") or []
        role = ADMIN if self.admin_group in groups else MEMBER
        return Principal(name=str(claims["sub"]), team=team, role=role)
