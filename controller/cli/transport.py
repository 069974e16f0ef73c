"""The CLI's HTTP on the standard library: httpx alone costs the CLI ~0.35 s of CPU to import."""

from __future__ import annotations

import http.client
import json as jsonlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

# What a failed exchange raises (no answer at all); an answer with an error status is not one.
TransportError = (OSError, http.client.HTTPException)


class Response:
    """An answer read whole: the part of httpx.Response the CLI's client uses."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Streamed:
    """An answer read as it arrives (`iter_raw` blocks, `iter_lines` lines), or whole."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.raw = raw
        self.status_code = raw.status
        self._content: bytes | None = None

    def read(self) -> bytes:
        if self._content is None:
            self._content = self.raw.read()
        return self._content

    def json(self) -> Any:
        return jsonlib.loads(self.read())

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def iter_raw(self, size: int = 1 << 16) -> Iterator[bytes]:
        while block := self.raw.read1(size):  # what has arrived, up to SIZE: no waiting to fill
            yield block

    def iter_lines(self) -> Iterator[str]:
        while line := self.raw.readline():
            yield line.decode("utf-8").rstrip("\r\n")


def query(params: Mapping[str, Any] | None) -> str:
    """httpx's encoding: lists repeat the key, booleans are `true`/`false`, None is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return f"?{urlencode(pairs)}" if pairs else ""


class Http:
    """One kept-alive connection to the controller; a stream gets a connection of its own."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json", **headers}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        url = urlsplit(self.base_url)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        return kind(url.hostname or "127.0.0.1", url.port, timeout=timeout)

    def _send(self, conn: http.client.HTTPConnection, method: str, path: str, **kw: Any) -> None:
        body = None if kw.get("json") is None else jsonlib.dumps(kw["json"]).encode()
        headers = {**self.headers, **(kw.get("headers") or {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
        target = urlsplit(self.base_url).path + path + query(kw.get("params"))
        conn.request(method, target, body=body, headers=headers)

    def request(self, method: str, path: str, **kw: Any) -> Response:
        kept, self._conn = self._conn, None  # given back only after a whole exchange
        if kept is not None:
            try:
                return self._exchange(kept, method, path, **kw)
            except TransportError:
                pass  # the server closed the idle connection: once more on a new one
        return self._exchange(self._connect(self.timeout), method, path, **kw)

    def _exchange(
        self, conn: http.client.HTTPConnection, method: str, path: str, **kw: Any
    ) -> Response:
        try:
            self._send(conn, method, path, **kw)
            raw = conn.getresponse()
            answer = Response(raw.status, raw.read())
        except BaseException:
            conn.close()
            raise
        if raw.will_close:
            conn.close()
        else:
            self._conn = conn
        return answer

    @contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[Streamed]:
        conn = self._connect(kw.pop("timeout", self.timeout))
        try:
            self._send(conn, method, path, **kw)
            yield Streamed(conn.getresponse())
        finally:
            conn.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
