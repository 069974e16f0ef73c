"""The OCI distribution API over HTTP: which manifest digest a tag names (Harbor, distribution).

`HEAD /v2/<repository>/manifests/<tag or digest>` with every manifest media type accepted
(an index or a single-platform manifest, OCI or Docker v2), so the digest answered is the one
`docker pull` and containerd resolve. Loopback registries and the hosts listed in
TRACECTL_REGISTRY_PLAIN_HTTP are spoken to over plain HTTP, every other one over HTTPS. A 401
with a Bearer challenge is answered the usual way: a token from the realm it names (with
TRACECTL_REGISTRY_USERNAME/_PASSWORD when set, else anonymous), then the request again; a
Basic challenge (an htpasswd registry) gets those credentials.
"""

from __future__ import annotations

import hashlib
import re

import httpx

from controller.config import Settings
from controller.domain.images import DOCKER_HUB, ImageRef, RegistryError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class OciRegistry:
    def __init__(self, settings: Settings) -> None:
        self.plain_http = {h.strip() for h in settings.registry_plain_http.split(",") if h.strip()}
        user, password = settings.registry_username, settings.registry_password
        self.credentials = (user, password or "") if user else None
        self.http = httpx.Client(timeout=settings.registry_timeout_s, follow_redirects=True)

    def base_url(self, image: ImageRef) -> str:
        host = image.host
        plain = host in self.plain_http or host.rsplit(":", 1)[0] in LOOPBACK
        api_host = "registry-1.docker.io" if host == DOCKER_HUB else host
        return f"{'http' if plain else 'https'}://{api_host}"

    def digest(self, image: ImageRef) -> str | None:
        url = f"{self.base_url(image)}/v2/{image.repository}/manifests/{image.reference}"
        response = self._ask("HEAD", url, image)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise RegistryError(f"{url} answered HTTP {response.status_code}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return str(digest)
        # A registry that leaves the header out: the digest is the manifest's own sha256.
        body = self._ask("GET", url, image)
        if not body.is_success:
            raise RegistryError(f"{url} answered HTTP {body.status_code}")
        return "sha256:" + hashlib.sha256(body.content).hexdigest()

    def _ask(self, method: str, url: str, image: ImageRef) -> httpx.Response:
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self._send(method, url, headers)
        scheme = response.headers.get("WWW-Authenticate", "").split(" ", 1)[0].lower()
        if response.status_code == 401 and scheme == "bearer":
            token = self._token(response.headers["WWW-Authenticate"], image)
            response = self._send(method, url, {**headers, "Authorization": f"Bearer {token}"})
        elif response.status_code == 401 and scheme == "basic" and self.credentials:
            response = self._send(method, url, headers, self.credentials)
        if response.status_code in (401, 403):
            raise RegistryError(
                f"{image.host} refused to show {image.repository} (HTTP "
                f"{response.status_code}): set TRACECTL_REGISTRY_USERNAME and _PASSWORD"
            )
        return response

    def _send(
        self, method: str, url: str, headers: dict[str, str], auth: tuple[str, str] | None = None
    ) -> httpx.Response:
        try:
            return self.http.request(method, url, headers=headers, auth=auth)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach {url}: {exc}") from exc

    def _token(self, challenge: str, image: ImageRef) -> str:
        """A pull token from the realm of a `Bearer realm=...,service=...` challenge."""
        fields = dict(_CHALLENGE.findall(challenge))
        if "realm" not in fields:
            raise RegistryError(f"{image.host} sent a Bearer challenge without a realm")
        params = {"scope": f"repository:{image.repository}:pull"}
        if "service" in fields:
            params["service"] = fields["service"]
        try:
            answer = self.http.get(fields["realm"], params=params, auth=self.credentials)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the token service {fields['realm']}: {exc}") from exc
        body = answer.json() if answer.is_success else {}
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(
                f"the token service {fields['realm']} answered HTTP {answer.status_code} "
                f"without a token for {image.repository}"
            )
        return str(token)

    def close(self) -> None:
        self.http.close()
