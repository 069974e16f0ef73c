"""Job/Deployment/Pod status -> ExecutorState, from statuses shaped as the API serves them.

KWOK (the local cluster) simulates Succeeded/Failed pods and the real scheduler's
Unschedulable; it cannot produce an OOM kill or an image pull failure, so those are
recorded statuses here. The live cluster tests cover the rest end to end.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.executors.k8s_status import deployment_state, job_state

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def job(
    *conditions: tuple[str, str], deadline: int | None = None, suspend: bool = False
) -> dict[str, Any]:
    return {
        "spec": {"activeDeadlineSeconds": deadline, "suspend": suspend},
        "status": {
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": ""} for t, r in conditions
            ]
        },
    }


def pod(
    container: dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions or []}
    if container is not None:
        status["containerStatuses"] = [{"name": "task", "image": "img:1", "state": container}]
    if init is not None:
        status["initContainerStatuses"] = [{"name": "prepare", "image": "rt:1", "state": init}]
    return {"metadata": {"name": "p"}, "status": status}


def test_complete_job_is_exit_0_with_the_termination_message_as_result() -> None:
    message = json.dumps({"exit_code": 0, "outputs": [{"path": "model.pkl"}]})
    state = job_state(
        job(("Complete", "")),
        [pod({"terminated": {"exitCode": 0, "reason": "Completed", "message": message}})],
        NOW,
        60,
    )
    assert (state.phase, state.exit_code, state.reason) == ("exited", 0, None)
    assert state.result == {"exit_code": 0, "outputs": [{"path": "model.pkl"}]}


def test_a_job_whose_pod_succeeded_has_exited_0_before_the_job_controller_says_complete() -> None:
    message = json.dumps({"exit_code": 0, "outputs": []})
    succeeded = pod({"terminated": {"exitCode": 0, "reason": "Completed", "message": message}})
    succeeded["status"]["phase"] = "Succeeded"
    state = job_state(job(), [succeeded], NOW, 60)
    assert (state.phase, state.exit_code, state.reason) == ("exited", 0, None)
    assert state.result == {"exit_code": 0, "outputs": []}
    running = pod({"running": {}})
    running["status"]["phase"] = "Running"
    assert job_state(job(), [running], NOW, 60).phase == "running"
    met = job_state(job(("SuccessCriteriaMet", "CompletionsReached")), [running], NOW, 60)
    assert (met.phase, met.exit_code) == ("exited", 0)


def test_failed_job_carries_the_container_exit_code() -> None:
    state = job_state(
        job(("Failed", "BackoffLimitExceeded")),
        [pod({"terminated": {"exitCode": 3, "reason": "Error"}})],
        NOW,
        60,
    )
    assert (state.phase, state.exit_code) == ("exited", 3)
    assert state.reason == "container task exited with code 3 (Error)"


def test_oom_killed() -> None:
    state = job_state(
        job(("FailureTarget", "BackoffLimitExceeded")),
        [pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})],
        NOW,
        60,
    )
    assert state.exit_code == 137
    assert "OOMKilled" in str(state.reason) and "resources.memory" in str(state.reason)


def test_init_container_failure_names_the_prepare_phase() -> None:
    state = job_state(
        job(("Failed", "BackoffLimitExceeded")),
        [
            pod(
                init={
                    "terminated": {"exitCode": 1, "reason": "Error", "message": "dvc pull failed"}
                }
            )
        ],
        NOW,
        60,
    )
    assert state.reason == "init container prepare exited with code 1 (Error): dvc pull failed"


def test_deadline_exceeded() -> None:
    state = job_state(job(("Failed", "DeadlineExceeded"), deadline=30), [], NOW, 60)
    assert state.phase == "exited" and state.exit_code is None
    assert "activeDeadlineSeconds=30" in str(state.reason)


def test_image_pull_errors_end_the_attempt() -> None:
    for reason in ("ImagePullBackOff", "ErrImagePull"):
        state = job_state(
            job(), [pod({"waiting": {"reason": reason, "message": "connection refused"}})], NOW, 60
        )
        assert state.phase == "exited"
        assert state.reason == f"image 'img:1' cannot be pulled ({reason}): connection refused"


def test_an_image_the_registry_lacks_is_named_as_missing() -> None:
    message = 'failed to resolve reference "127.0.0.1:5001/a/b:1": 127.0.0.1:5001/a/b:1: not found'
    state = job_state(
        job(), [pod({"waiting": {"reason": "ErrImagePull", "message": message}})], NOW, 60
    )
    assert state.reason == f"image 'img:1' is not in its registry (ErrImagePull): {message}"


def test_unschedulable_waits_for_its_grace_then_ends() -> None:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/2 nodes are available: 1 Insufficient nvidia.com/gpu.",
        "lastTransitionTime": (NOW - timedelta(seconds=10)).isoformat(),
    }
    assert job_state(job(), [pod(conditions=[cond])], NOW, 60).phase == "running"
    state = job_state(job(), [pod(conditions=[cond])], NOW, 5)
    assert state.phase == "exited"
    assert state.reason == "unschedulable: 0/2 nodes are available: 1 Insufficient nvidia.com/gpu."


def test_suspended_job_waits_for_kueue() -> None:
    state = job_state(job(suspend=True), [], NOW, 60)
    assert state.phase == "running" and "Kueue" in str(state.reason)


def test_service_is_running_with_its_url_and_readiness() -> None:
    dep = {
        "status": {
            "readyReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"},
            ],
        }
    }
    state = deployment_state(dep, [], "http://s.ns.svc:80", NOW, 60)
    assert state.phase == "running"
    assert state.result == {"url": "http://s.ns.svc:80", "ready": True}
    stuck = {
        "status": {
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "timed out progressing",
                }
            ]
        }
    }
    ended = deployment_state(stuck, [], "http://s.ns.svc:80", NOW, 60)
    assert ended.phase == "exited" and "never became available" in str(ended.reason)


def test_a_pod_evicted_by_the_kubelet_fails_the_attempt_saying_so() -> None:
    evicted = pod({"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}})
    evicted["spec"] = {"nodeName": "localhost"}
    evicted["status"].update(
        phase="Failed", reason="Evicted", message="The node was low on resource: memory."
    )
    state = job_state(job(("Failed", "BackoffLimitExceeded")), [evicted], NOW, 60)
    assert state.phase == "exited"
    assert state.reason == (
        "evicted by the kubelet (the node ran short of memory or disk) [Evicted, node "
        "localhost]: The node was low on resource: memory."
    )


def test_a_pod_on_a_lost_node_ends_the_attempt_before_the_job_fails() -> None:
    cond = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}
    lost = pod({"running": {}}, conditions=[cond])
    lost["spec"] = {"nodeName": "worker-2"}
    state = job_state(job(), [lost], NOW, 60)
    assert state.phase == "exited" and state.exit_code is None
    assert str(state.reason).startswith("node lost: its node became unreachable")
    assert "[DeletionByTaintManager, node worker-2]" in str(state.reason)


def test_a_drained_node_evicts_through_the_eviction_api() -> None:
    cond = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
    state = job_state(job(("Failed", "BackoffLimitExceeded")), [pod(conditions=[cond])], NOW, 60)
    assert "a node drain" in str(state.reason)


def test_the_deadline_wins_over_the_disruption_it_causes() -> None:
    cond = {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}
    state = job_state(
        job(("Failed", "DeadlineExceeded"), deadline=5), [pod(conditions=[cond])], NOW, 60
    )
    assert str(state.reason).startswith("timed out")
