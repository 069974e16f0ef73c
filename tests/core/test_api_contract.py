"""The REST contract: shapes, status codes, pagination, idempotency, problem documents."""

from __future__ import annotations

from tests.core.conftest import Api, python


def test_health_ready_and_openapi(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    spec = api.client.get("/openapi.json").json()
    for path in (
        "/v1/runs",
        "/v1/runs/{run_id}/tasks",
        "/v1/tasks/{task_id}/logs",
        "/v1/tasks/{task_id}/cancel",
        "/v1/runs/{run_id}/lineage",
        "/v1/tasks/{task_id}/lineage",
        "/v1/artifacts/{sha256}",
    ):
        assert path in spec["paths"], path


def test_runs_are_created_listed_and_paged(api: Api) -> None:
    ids = [api.run(f"p{i}") for i in range(5)]
    first = api.client.get("/v1/runs", params={"limit": 2}).json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:2]
    second = api.client.get("/v1/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in second["items"]] == ids[::-1][2:4]
    third = api.client.get("/v1/runs", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [r["id"] for r in third["items"]] == ids[:1] and third["next_cursor"] is None
    assert api.client.get(f"/v1/runs/{ids[0]}").json()["pipeline"] == "p0"


def test_run_idempotency_key_replays_and_conflicts(api: Api) -> None:
    body = {"pipeline": "idem", "labels": {"a": "1"}}
    first = api.client.post("/v1/runs", json=body, headers={"Idempotency-Key": "k1"})
    again = api.client.post("/v1/runs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = api.client.post(
        "/v1/runs", json={"pipeline": "different"}, headers={"Idempotency-Key": "k1"}
    )
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert len(api.client.get("/v1/runs").json()["items"]) == 1


def test_task_idempotency_key_returns_the_same_task(api: Api) -> None:
    run = api.run()
    body = {"name": "once", "spec": {"command": python("print(1)")}, "idempotency_key": "t-1"}
    first = api.client.post(f"/v1/runs/{run}/tasks", json=body)
    again = api.client.post(f"/v1/runs/{run}/tasks", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    tasks = api.client.get("/v1/tasks", params={"run_id": run}).json()["items"]
    assert len(tasks) == 1


def test_not_found_is_a_problem_document(api: Api) -> None:
    response = api.client.get("/v1/tasks/task_nope")
    assert response.status_code == 404
    problem = response.json()
    assert problem["status"] == 404 and "task_nope" in problem["detail"]
    assert problem["instance"] == "/v1/tasks/task_nope"


def test_duplicate_task_name_in_a_run_conflicts(api: Api) -> None:
    run = api.run()
    api.submit(run, "dup", command=python("print(1)"))
    again = api.client.post(
        f"/v1/runs/{run}/tasks", json={"name": "dup", "spec": {"command": ["true"]}}
    )
    assert again.status_code == 409 and "dup" in again.json()["detail"]


def test_tasks_list_filters_by_run_and_pages(api: Api) -> None:
    run_a, run_b = api.run(), api.run()
    for i in range(3):
        api.submit(run_a, f"a{i}", command=python("pass"))
    api.submit(run_b, "b0", command=python("pass"))
    page = api.client.get("/v1/tasks", params={"run_id": run_a, "limit": 2}).json()
    assert [t["name"] for t in page["items"]] == ["a0", "a1"]
    rest = api.client.get(
        "/v1/tasks", params={"run_id": run_a, "limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [t["name"] for t in rest["items"]] == ["a2"]
    bad = api.client.get("/v1/tasks", params={"cursor": "garbage!"})
    assert bad.status_code == 422
