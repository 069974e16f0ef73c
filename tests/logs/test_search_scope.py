"""Log search with token auth: a team finds its own tasks' lines, never another team's.

Real Kafka, real shipper (rsyslog), real OpenSearch and Elasticsearch, real S3
(deploy/local/*): the team is the `labels.team` the sink writes and the index maps as a keyword.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth.tokens import create_token
from controller.config import Settings
from controller.ports import SearchIndex
from tests.core.conftest import python
from tests.logs.conftest import wait_indexed

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.s3,
    pytest.mark.shipper,
    pytest.mark.timeout(600),
]


def test_log_search_shows_a_team_its_own_lines_only(
    pipeline_settings: Settings, search: SearchIndex
) -> None:
    marker = f"scoped-{uuid.uuid4().hex}"
    app = create_app(pipeline_settings.model_copy(update={"auth": "tokens"}))
    with TestClient(app) as client:
        db = app.state.service.db
        red, blue, admin = (
            {"Authorization": f"Bearer {create_token(db, n, t, role=r)}"}
            for n, t, r in (
                ("alice", "red", "member"),
                ("bob", "blue", "member"),
                ("root", "ops", "admin"),
            )
        )
        run = client.post("/v1/runs", json={"pipeline": "search-scope"}, headers=red).json()
        task = client.post(
            f"/v1/runs/{run['id']}/tasks",
            headers=red,
            json={"name": "say", "spec": {"command": python(f"print('{marker}')")}},
        ).json()
        done = client.get(
            f"/v1/tasks/{task['id']}/wait", params={"timeout_s": 120}, headers=red
        ).json()
        assert done["status"] == "succeeded", done
        assert any(d["message"] == marker for d in wait_indexed(search, task["id"], 1))

        def found(headers: dict[str, str], **params: str) -> list[str]:
            response = client.get("/v1/logs/search", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return [h["message"] for h in response.json()["items"]]

        assert marker in found(red, text=marker)  # beside the runner's "exec" line
        assert marker in found(admin, text=marker)
        assert found(blue, text=marker) == []
        assert found(blue, run_id=run["id"]) == found(blue, task_id=task["id"]) == []
