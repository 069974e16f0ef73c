"""Following tasks from the CLI: status and queue-reason changes, and a failed task's log tail."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from controller.cli.client import Client

# TaskStatus's final values (controller.domain.records.TERMINAL), as the API writes them; not
# imported from there: that module brings pydantic into every CLI start.
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

TAIL_LINES = 20
STREAMS = {"stdout": "out", "stderr": "err", "system": "sys"}


def state(task: dict[str, Any]) -> str:
    """What the task is doing, with why it waits: `queued (waiting for gpu: 0 of 1 free)`."""
    queue = task.get("queue") or {}
    reason = queue.get("reason") or task.get("reason")
    position = queue.get("position")
    where = f"#{position} in the queue, " if position is not None else ""
    return f"{task['status']}" + (f" ({where}{reason})" if reason else "")


def tail(api: Client, task_id: str, lines: int = TAIL_LINES) -> list[dict[str, Any]]:
    """The last LINES log lines of the task's latest attempt."""
    page = api.get(f"/v1/tasks/{task_id}/logs", tail=lines, limit=lines)
    kept: deque[dict[str, Any]] = deque(page["items"], maxlen=lines)
    while len(page["items"]) == lines and not page.get("tail"):  # a server that pages only
        page = api.get(f"/v1/tasks/{task_id}/logs", after_seq=page["next_after_seq"], limit=1000)
        kept.extend(page["items"])
    return list(kept)


def explain_failure(api: Client, task: dict[str, Any], out: Console) -> None:
    """The end of a failed task's log, and the command that prints all of it."""
    lines = tail(api, task["id"])
    ended = f"task {task['name']} {state(task)}"
    if not lines:  # never started (an upstream failed, cancelled while queued): no log to show
        out.print(ended, style="red", markup=False, highlight=False, soft_wrap=True)
        return
    out.print(
        f"{ended}; the last {len(lines)} log lines:",
        style="red",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for line in lines:
        out.print(
            f"  {STREAMS.get(line['stream'], line['stream'])} {line['message']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"all of it: tracectl logs {task['id']}", soft_wrap=True, highlight=False)


def wait(api: Client, task: dict[str, Any], out: Console, poll_s: float = 2.0) -> dict[str, Any]:
    """Wait for TASK to end, printing each new status or queue reason."""
    shown = ""
    while True:
        now = state(task)
        if now != shown:
            out.print(f"task {task['name']} {task['id']}: {now}", soft_wrap=True, highlight=False)
            shown = now
        if task["status"] in TERMINAL:
            return task
        task = api.get(f"/v1/tasks/{task['id']}/wait", timeout_s=poll_s)
