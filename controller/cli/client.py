"""A small HTTP client for the controller API, used by the CLI and the demo."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from controller.cli.transport import Http, TransportError

RETRYABLE = {502, 503, 504}


class ApiError(Exception):
    """An error answer from the controller, carrying its problem document."""

    def __init__(self, status: int, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problem = problem or {}


class Client:
    def __init__(
        self, url: str, token: str | None = None, timeout: float = 30.0, retries: int = 3
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http: Any = Http(url, headers, timeout)  # tests put an httpx TestClient here
        self.retries = retries

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except TransportError as exc:
                if attempt == self.retries:
                    raise ApiError(
                        0, f"cannot reach the controller at {self.http.base_url}: {exc}"
                    ) from exc
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code in RETRYABLE and attempt < self.retries:
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code >= 400:
                try:
                    problem = response.json()
                except ValueError:
                    problem = {"detail": response.text}
                raise ApiError(response.status_code, str(problem.get("detail")), problem)
            return response.json()
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(
        self, path: str, body: dict[str, Any] | None = None, idempotency_key: str | None = None
    ) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", path, json=body or {}, headers=headers)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def follow_logs(
        self, task_id: str, after_seq: int = 0, attempt: int | None = None
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"follow": "true", "after_seq": after_seq}
        if attempt is not None:
            params["attempt"] = attempt
        try:
            with self.http.stream(
                "GET", f"/v1/tasks/{task_id}/logs", params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _detail(response))
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except TransportError as exc:
            raise ApiError(
                0, f"cannot reach the controller at {self.http.base_url}: {exc}"
            ) from exc

    def stream_text(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        """The body of a text answer, block by block as it arrives."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self.http.stream("GET", path, params=query, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _detail(response), _problem(response))
                yield from response.iter_raw(1 << 16)
        except TransportError as exc:
            raise ApiError(
                0, f"cannot reach the controller at {self.http.base_url}: {exc}"
            ) from exc


def _problem(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(response: Any) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return str(response.text)
