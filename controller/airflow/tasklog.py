"""The tracectl task's log lines, written into the Airflow task log (streamed, or the tail)."""

from __future__ import annotations

from typing import Any

from controller.airflow.hooks import TracectlHook

PAGE = 500


class TaskLogWriter:
    """Copies one tracectl task's log lines into LOG (the operator's logger), each line once.

    ``follow`` reads what was added since the last call (``after_seq`` of the task's current
    attempt); ``tail`` the last lines, for a task that ended while no worker watched it (the trigger
    writes those with :func:`write_tail`).
    """

    def __init__(self, hook: TracectlHook, task_id: str, log: Any) -> None:
        self.hook, self.task_id, self.log = hook, task_id, log
        self.attempt: int | None = None
        self.after = 0

    @property
    def url(self) -> str:
        return logs_url(self.hook.base_url, self.task_id)

    def follow(self, attempt: int | None) -> None:
        """Write the lines the attempt logged since the last call (all of them, page by page)."""
        if not attempt:
            return  # not started yet: no lines
        if attempt != self.attempt:  # a retry starts its lines at seq 1 again
            self.attempt, self.after = attempt, 0
        while True:
            page = self.hook.task_logs(self.task_id, self.after, PAGE, attempt=attempt)
            self._write(page["items"])
            self.after = int(page.get("next_after_seq") or self.after)
            if len(page["items"]) < PAGE:
                return

    def tail(self, lines: int) -> None:
        """Write the last LINES lines of the task's latest attempt, and where the rest is."""
        if lines > 0:
            write_tail(
                self.log, self.task_id, self.url, self.hook.task_log_tail(self.task_id, lines)
            )

    def _write(self, items: list[dict[str, Any]]) -> None:
        write_lines(self.log, items)


def logs_url(base_url: str, task_id: str) -> str:
    return f"{base_url}/v1/tasks/{task_id}/logs"


def write_tail(log: Any, task_id: str, url: str, page: dict[str, Any]) -> None:
    """Write a tail page (``GET …/logs?tail=N``) into LOG under a line saying where the rest is."""
    log.info(
        "last %d log line(s) of tracectl task %s (full log: %s):", len(page["items"]), task_id, url
    )
    write_lines(log, page["items"])


def write_lines(log: Any, items: list[dict[str, Any]]) -> None:
    for line in items:
        write = log.warning if line.get("stream") == "stderr" else log.info
        write("[tracectl %s] %s", line.get("stream", "stdout"), line.get("message", ""))
