"""The controller on its production store: PostgreSQL restarted mid-run loses nothing.

The controller runs as a real `tracectl server` process with TRACECTL_DATABASE_URL pointing
at the PostgreSQL from deploy/local; the database server is stopped and started again while
tasks run. Every task must still end succeeded, exactly once, with its logs and outputs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.leases import scratch_postgres
from tests.server_process import ServerProcess
from tests.stack_fixtures import DEPLOY_LOCAL
from tests.waiting import poll_until

TASK = (
    "import time, pathlib\nprint('begin', flush=True)\ntime.sleep(3)\n"
    "pathlib.Path('out.txt').write_text('ok')\nprint('end', flush=True)\n"
)


def postgres_ctl(action: str) -> None:
    subprocess.run(
        [str(DEPLOY_LOCAL / "postgres"), action], check=True, capture_output=True, timeout=300
    )


@pytest.mark.postgres
def test_database_restart_mid_run(
    postgres: dict[str, str], tmp_path: Path, mlflow_uri: str
) -> None:
    with scratch_postgres(postgres["TRACECTL_POSTGRES_URL"]) as url:
        server = ServerProcess(
            tmp_path / "home", {"TRACECTL_DATABASE_URL": url, "TRACECTL_TRACKING_URI": mlflow_uri}
        )
        server.start()
        try:
            run = httpx.post(f"{server.url}/v1/runs", json={"pipeline": "pg"}).json()["id"]
            ids = [
                httpx.post(
                    f"{server.url}/v1/runs/{run}/tasks",
                    json={
                        "name": f"t{i}",
                        "spec": {"command": [sys.executable, "-c", TASK], "outputs": ["out.txt"]},
                    },
                ).json()["id"]
                for i in range(4)
            ]
            time.sleep(1.5)
            postgres_ctl("stop")
            time.sleep(3)
            postgres_ctl("start")

            def read() -> list[dict[str, object]]:
                try:
                    return [server.get(f"/v1/tasks/{t}") for t in ids]
                except (httpx.HTTPError, ValueError):
                    return []  # the API answers 5xx until its pool reconnects

            tasks = poll_until(
                read,
                lambda ts: (
                    bool(ts)
                    and all(t.get("status") in ("succeeded", "failed", "cancelled") for t in ts)
                ),
                180,
                0.5,
            )
            assert [t["status"] for t in tasks] == ["succeeded"] * 4, tasks
            assert all(t["attempt"] == 1 for t in tasks)
            for task_id in ids:
                lines = server.get(f"/v1/tasks/{task_id}/logs")["items"]
                assert [x["message"] for x in lines if x["stream"] == "stdout"] == ["begin", "end"]
                artifacts = server.get(f"/v1/tasks/{task_id}/artifacts")
                assert [a["path"] for a in artifacts] == ["out.txt"]
            assert server.get("/readyz")["ready"] is True
        finally:
            server.stop()
