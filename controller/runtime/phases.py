"""The task runtime contract split in two phases, for a pod: `prepare` then `exec`.

    python -m controller.runtime.phases prepare LAUNCH_FILE WORKSPACE
    python -m controller.runtime.phases exec LAUNCH_FILE WORKSPACE -- ARGV...
    python -m controller.runtime.phases all LAUNCH_FILE WORKSPACE -- ARGV...   (both, in turn)

`prepare` runs in the init container (runtime image): code at the resolved commit, DVC
data checked against the recorded md5s, input artifacts by sha256, into WORKSPACE/src.
`exec` runs in the task container: ARGV in WORKSPACE/src with stdout/stderr left to the
container (the kubelet keeps them; the controller follows them into the log sink), then
the declared outputs are stored and a compact result is written to the termination
message, which Kubernetes copies into the pod status for the controller to read.
`all` does both in one interpreter: the executor's default when the task runs in the runtime
image, so a pod starts Python once.

Every start of this module is on a task's critical path, so it imports only the launch
document's models; git, DVC, the artifact store and the settings are imported by the step
that needs them (`python -X importtime -m controller.runtime.phases` shows what is left).

The local runner (controller.runtime.runner) keeps doing both phases in one process; the
steps here call the same code/data/outputs functions so the contract is the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.domain.launch import LaunchDocument, task_environ

if TYPE_CHECKING:
    from controller.ports import ArtifactStore

TERMINATION_LOG = Path(os.environ.get("TRACECTL_TERMINATION_LOG", "/dev/termination-log"))
TERMINATION_LIMIT = 4096  # the kubelet keeps at most 4096 bytes of the message
PREPARED = "prepared.json"


def _say(message: str) -> None:
    print(f"tracectl: {message}", flush=True)


def _store(launch: LaunchDocument) -> ArtifactStore:
    from controller import backends
    from controller.config import Settings

    return backends.artifact_store(Settings.of_runtime(launch.runtime))


def _setup_errors() -> tuple[type[Exception], ...]:
    """What a bad task (not a runtime bug) raises; evaluated only once something was raised."""
    from controller.runtime.code import CodeError
    from controller.runtime.data import DataError
    from controller.runtime.outputs import OutputError

    return (CodeError, DataError, OutputError, OSError)


def prepare(launch: LaunchDocument, workspace: Path) -> dict[str, Any]:
    spec = launch.spec
    src = workspace / "src"
    commit = launch.resolved.commit
    if spec.code and commit:
        from controller.runtime import code

        _say(f"checking out {spec.code.repo} at {commit}")
        code.checkout(spec.code.repo, commit, src)
    else:
        src.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, Any] = {}
    if spec.data and spec.code and launch.resolved.data:
        from controller.runtime import data_revs

        prepared["data"] = data_revs.fetch(
            spec.code.repo,
            commit,
            [d.model_dump() for d in launch.resolved.data],
            src,
            workspace / "data-revs",
            _say,
        )
    if launch.inputs:
        from controller.runtime.outputs import place_inputs

        _say(f"placing {len(launch.inputs)} input artifact(s)")
        place_inputs(_store(launch), launch.input_items(), src)
    (workspace / PREPARED).write_text(json.dumps(prepared))
    return prepared


def execute(launch: LaunchDocument, workspace: Path, argv: list[str]) -> dict[str, Any]:
    spec = launch.spec
    src = workspace / "src"
    params = spec.params
    params_file = workspace / "params.json"
    params_file.write_text(json.dumps(params, indent=2, sort_keys=True))
    env = {
        **task_environ(os.environ),  # the archive's keys are the runtime's, not the task's
        "TRACECTL_PARAMS_FILE": str(params_file),
        "TRACECTL_PARAMS": json.dumps(params, sort_keys=True),
    }
    _say(f"exec {json.dumps(argv)}")
    child = subprocess.Popen(argv, cwd=src, env=env, stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)  # the kubelet's SIGTERM reaches the task

    signal.signal(signal.SIGTERM, forward)
    exit_code = child.wait()
    result: dict[str, Any] = {"exit_code": exit_code}
    if exit_code != 0:
        result["reason"] = (
            f"killed by signal {signal.Signals(-exit_code).name}"
            if exit_code < 0
            else f"exited with code {exit_code}"
        )
        return result
    prepared_file = workspace / PREPARED
    if prepared_file.exists():
        result["data"] = json.loads(prepared_file.read_text()).get("data")
    if not spec.outputs:  # nothing to hash or store: no store client to start
        result["outputs"] = []
        return result
    from controller.runtime.outputs import collect_outputs

    outputs = collect_outputs(_store(launch), src, spec.outputs)
    for item in outputs:
        _say(f"output {item['path']} sha256:{item['sha256']}")
    result["outputs"] = outputs
    return result


def termination_message(result: dict[str, Any]) -> str:
    """The result as JSON within the kubelet's 4 KiB; outputs are dropped first if too big."""
    text = json.dumps(result, separators=(",", ":"), default=str)
    if len(text.encode()) <= TERMINATION_LIMIT:
        return text
    slim = {k: v for k, v in result.items() if k not in ("outputs", "data")}
    slim["truncated"] = True
    return json.dumps(slim, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] not in ("prepare", "exec", "all"):
        print(__doc__, file=sys.stderr)
        return 2
    phase, launch_file, workspace = args[0], Path(args[1]), Path(args[2])
    launch = LaunchDocument.read(launch_file)
    try:
        if phase in ("prepare", "all"):
            prepare(launch, workspace)
        if phase == "prepare":
            return 0
        command = args[4:] if args[3:4] == ["--"] else list(launch.spec.command)
        result = execute(launch, workspace, command)
    except _setup_errors() as exc:
        _say(str(exc))
        result = {"exit_code": None, "reason": str(exc)}
    _write_termination(result)
    code_ = result.get("exit_code")
    return code_ if isinstance(code_, int) and code_ > 0 else (0 if code_ == 0 else 1)


def _write_termination(result: dict[str, Any]) -> None:
    try:
        TERMINATION_LOG.write_text(termination_message(result))
    except OSError:
        _say("cannot write the termination message; the exit code alone tells the result")


if __name__ == "__main__":
    sys.exit(main())
