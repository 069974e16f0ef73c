"""TracectlHook through a controller outage (run in Airflow's venv).

usage: python outage_runner.py CONTROLLER_URL RETRY_FOR_S
Prints "try N" before each HTTP try, then one JSON object: the run made and the task run
after the outage, or the error the hook gave up with.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from controller.airflow.hooks import TracectlHook


class CountingHook(TracectlHook):
    """The real hook; prints each try so the test knows the outage was seen."""

    tries = 0

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        CountingHook.tries += 1
        print(f"try {CountingHook.tries}", flush=True)
        return super()._headers(idempotency_key)


def main() -> int:
    url, retry_for_s = sys.argv[1], float(sys.argv[2])
    import os

    os.environ["AIRFLOW_CONN_OUTAGE"] = json.dumps(
        {
            "conn_type": "tracectl",
            "host": url,
            "extra": {"retries": 0, "backoff_s": 0.2, "max_backoff_s": 2},
        }
    )
    hook = CountingHook("outage", retry_for_s=retry_for_s)
    out: dict[str, Any] = {}
    try:
        run = hook.ensure_run(pipeline="outage", dag_id="outage", run_id="manual__outage")
        tries = CountingHook.tries
        task = hook.submit_task(
            run["id"],
            name="after",
            idempotency_key="outage:after",
            spec={"command": ["python", "-c", "print('after the outage')"]},
        )
        while task["status"] not in ("succeeded", "failed", "cancelled"):
            task = hook.wait_task(task["id"], 10.0)
        out = {"run": run["id"], "tries_for_run": tries, "task": task["status"]}
    except ConnectionError as exc:
        out = {"error": str(exc), "tries": CountingHook.tries}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
