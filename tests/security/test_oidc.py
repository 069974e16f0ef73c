"""OIDC bearer JWTs: signature, issuer, audience and expiry are checked against a JWKS file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings

ISSUER, AUDIENCE = "https://idp.example.invalid", "tracectl"


@pytest.fixture
def idp(tmp_path: Path) -> tuple[Any, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return key, jwks


def token(key: Any, **claims: Any) -> str:
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "carol",
        "team": "vision",
        "exp": int(time.time()) + 300,
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def test_oidc_tokens_are_verified_and_scoped(idp: tuple[Any, Path], tmp_path: Path) -> None:
    key, jwks = idp
    settings = Settings(
        home=tmp_path / "home",
        auth="oidc",
        oidc_jwks=str(jwks),
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    with TestClient(create_app(settings, run_supervisor=False)) as client:
        good = {"Authorization": f"Bearer {token(key)}"}
        run = client.post("/v1/runs", json={"pipeline": "p"}, headers=good)
        assert run.status_code == 201
        other_team = {"Authorization": f"Bearer {token(key, team='audio')}"}
        assert client.get(f"/v1/runs/{run.json()['id']}", headers=other_team).status_code == 404
        foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for bad in (
            token(key, exp=int(time.time()) - 10),
            token(key, aud="other"),
            token(key, iss="https://evil.invalid"),
            token(foreign),
            token(key, team=""),
        ):
            response = client.get("/v1/runs", headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401, bad
