"""A real registry (the distribution binary) behind token auth, with a small token service.

The registry trusts a self-signed certificate; the token service (a thread here) signs a
JWT with its key, the certificate in the `x5c` header, granting what a request's scope asks
for. It stands for Harbor's and Docker Hub's token services: the registry checks the token
exactly as it would theirs.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.waiting import wait_for

SERVICE = "tracectl-test-registry"
ISSUER = "tracectl-test-tokens"


def _certificate(work: Path) -> tuple[bytes, str]:
    """A private key (PEM) and its self-signed certificate (written as the trust bundle)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (work / "token.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _handler(key: bytes, chain: str, asked: list[str]) -> type[BaseHTTPRequestHandler]:
    class Tokens(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
                asked.append(scope)
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": "",
                "aud": query.get("service", [""])[0],
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
            token = jwt.encode(claims, key, algorithm="RS256", headers={"x5c": [chain]})
            body = json.dumps({"token": token}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Tokens


@contextmanager
def token_registry(binary: Path, work: Path, port: int) -> Iterator[tuple[str, list[str]]]:
    """The registry's host:port, and the scopes the token service was asked for."""
    key, chain = _certificate(work)
    asked: list[str] = []
    tokens = ThreadingHTTPServer(("127.0.0.1", 0), _handler(key, chain, asked))
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    realm = f"http://127.0.0.1:{tokens.server_address[1]}/token"
    (work / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\n"
        f"storage: {{filesystem: {{rootdirectory: {work / 'storage'}}}}}\n"
        f"auth: {{token: {{realm: {realm}, service: {SERVICE}, issuer: {ISSUER}, "
        f"rootcertbundle: {work / 'token.crt'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    process = subprocess.Popen(
        [str(binary), "serve", str(work / "config.yml")],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"},
    )

    def challenges() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    try:
        wait_for("the token-auth registry", challenges, 60)
        yield f"127.0.0.1:{port}", asked
    finally:
        process.terminate()
        process.wait(timeout=30)
        tokens.shutdown()
