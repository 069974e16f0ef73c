"""deploy/local/lib.sh ``spawn_kept``: a kept process comes back when it dies, and stops for good.

Real processes (bash, sleep, signals): the same helper keeps the local Airflow's processes up
when PostgreSQL restarts under them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.stack_fixtures import DEPLOY_LOCAL
from tests.waiting import wait_for

LIB = DEPLOY_LOCAL / "lib.sh"


def bash(script: str, tmp_path: Path) -> None:
    subprocess.run(
        ["bash", "-c", f'. "{LIB}"; {script}'],
        check=True,
        timeout=60,
        env={
            **os.environ,
            "TRACECTL_STACK_DIR": str(tmp_path / "stack"),
            "TRACECTL_CACHE": str(tmp_path / "cache"),
        },
    )


def children(pid: int, command: str = "sleep 600") -> list[int]:
    """PID's children running COMMAND: the loop's own short-lived children (sourcing lib.sh,
    its back-off sleep) are not the kept command, and may be gone by the time they are killed."""
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    rows = (line.strip().split(None, 1) for line in out.stdout.splitlines() if line.strip())
    return [int(row[0]) for row in rows if len(row) == 2 and row[1] == command]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_kept_process_is_started_again_and_stop_ends_it(tmp_path: Path) -> None:
    pidfile, logfile = tmp_path / "sleeper.pid", tmp_path / "sleeper.log"
    bash(f'SVC=demo spawn_kept "{pidfile}" "{logfile}" sleep 600', tmp_path)
    loop = int(pidfile.read_text())
    first = wait_for("the kept command to start", lambda: children(loop), 20, 0.1)[0]

    os.kill(first, signal.SIGKILL)  # dies as an Airflow process does when its database goes
    second = wait_for(
        "the kept command to start again",
        lambda: [p for p in children(loop) if p != first],
        20,
        0.1,
    )[0]
    assert alive(loop)
    log = logfile.read_text()
    assert "[deploy/local demo] sleeper exited (status 137); starting it again in 1s" in log

    bash(f'stop_pid "{pidfile}" 10', tmp_path)
    wait_for("stop_pid to stop the kept command", lambda: not alive(second), 5, 0.1)
    assert not alive(loop)
    assert not pidfile.exists()
    time.sleep(1.5)  # longer than the back-off: nothing comes back after a stop
    assert (
        subprocess.run(["pgrep", "-g", str(loop)], capture_output=True, check=False).returncode == 1
    )
