"""The warm runner: `python -m controller.runtime.warm` forks each attempt's runner.

A runner started as a new interpreter spends ~0.25 s of CPU (several times that on a busy
machine) starting Python and importing the runtime before its task's first step; a fork of
this process, which has imported them once, starts in about a millisecond.

Protocol, one JSON document a line. On stdin: `{"launch_file", "cwd", "env", "out"}`, one
runner each. On stdout: `{"pid": N, "create_time": T}` (or `{"error": "..."}`) answering each
request in turn (T: the runner's start time as psutil reads it, read here before this
process can reap the runner: a short task's runner may be gone before the controller asks),
and `{"exited": N}` when runner N has ended (the controller then inspects at once instead of
at its next round). EOF on stdin ends this process; the runners live on (each leads its own
session, as a runner started with `start_new_session` does).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import psutil

from controller.domain.launch import LAUNCH_COMPLETE_SIGNAL
from controller.runtime import runner


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _become_runner(request: dict[str, Any], wakeup: tuple[int, int]) -> int:
    """In the forked child: the same process a `python -m controller.runtime.runner` is."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the runner waits for its command
    for fd in wakeup:
        os.close(fd)
    os.chdir(request["cwd"])
    out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.close(null)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [runner.__file__, request["launch_file"]]
    return runner.Runner(Path(request["launch_file"])).run()


def _spawn(request: dict[str, Any], wakeup: tuple[int, int]) -> dict[str, Any]:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _become_runner(request, wakeup)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    # Before the answer: a controller that stops after it finds the runner by this file.
    (Path(request["cwd"]) / "runner.pid").write_text(str(pid))
    # Not reaped before the next turn of serve(): the process (or its zombie) is there to read.
    return {"pid": pid, "create_time": psutil.Process(pid).create_time()}


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say({"exited": pid})


def serve() -> int:
    # What the imports made is kept out of the collector's sight: a runner's collections
    # would otherwise touch (and so copy) every page of it that the fork shares.
    gc.collect()
    gc.freeze()
    wakeup = os.pipe()
    os.set_blocking(wakeup[1], False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup byte is what counts
    # Blocked before any fork, so a runner's signal waits for it from its first instruction.
    signal.pthread_sigmask(signal.SIG_BLOCK, [LAUNCH_COMPLETE_SIGNAL])
    requests = sys.stdin.buffer
    while True:
        ready, _, _ = select.select([requests, wakeup[0]], [], [])
        if wakeup[0] in ready:
            os.read(wakeup[0], 4096)
            _reap()
        if requests in ready:
            line = requests.readline()
            if not line:
                return 0  # the controller is gone
            try:
                _say(_spawn(json.loads(line), wakeup))
            except Exception as exc:  # the controller starts this runner the cold way
                _say({"error": repr(exc)})


if __name__ == "__main__":
    sys.exit(serve())
