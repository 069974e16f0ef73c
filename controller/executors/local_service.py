"""Long-running services on the local executor: a loopback port, and when it is ready.

Same contract as Kubernetes: the service reads the port to listen on from env PORT (the
spec's own PORT wins), and the controller gives out `http://127.0.0.1:<port>` once the port
accepts TCP connections. What is needed to check it again after a controller restart (port,
readiness deadline) lives in the executor reference, which the store keeps.
"""

from __future__ import annotations

import socket
import time

from controller.domain.refs import ServiceRef
from controller.domain.spec import TaskMode, TaskSpec, port_of
from controller.loopback import HOST, free_port
from controller.ports import ExecutorState

CONNECT_TIMEOUT_S = 0.2


def is_service(spec: TaskSpec) -> bool:
    return spec.mode == TaskMode.SERVICE


def chosen_port(spec: TaskSpec) -> int:
    """The spec's env PORT when it sets one, else a port free on the loopback right now."""
    return port_of(spec.env) or free_port()


def service_ref(
    process: dict[str, int | float | str], port: int, ready_timeout_s: float
) -> ServiceRef:
    """The reference of a service's runner PROCESS; `url` and `ready` are added once it
    answers."""
    return ServiceRef.model_validate({**process, "port": port, "ready_timeout_s": ready_timeout_s})


def url_of(port: int) -> str:
    return f"http://{HOST}:{port}"


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def readiness(ref: ServiceRef) -> ExecutorState:
    """The state of a service whose runner process is alive."""
    port = ref.port
    if ref.ready or accepts_connections(port):
        return ExecutorState("running", result={"url": url_of(port), "ready": True})
    waited = time.time() - (ref.create_time or 0.0)
    limit = ref.ready_timeout_s
    if waited > limit:
        return ExecutorState(
            "exited",
            reason=f"the service did not accept connections on {HOST}:{port} within "
            f"{limit:g}s (it must listen on the port in env PORT)",
            result={"url": url_of(port), "ready": False},
        )
    return ExecutorState("running", result={"url": url_of(port), "ready": False})
