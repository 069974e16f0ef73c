"""What a Job, Deployment and their pods say, as an ExecutorState with a message for people.

Pure functions over the objects as the API serves them (JSON dicts), so that every mapping
is testable from a recorded status, including the ones the simulated cluster cannot produce
(OOMKilled, image pulls, evictions, lost nodes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.ports import ExecutorState

IMAGE_ERRORS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
TASK_CONTAINER = "task"

Obj = Mapping[str, Any]


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {
        c["type"]: c
        for c in (obj.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _phase(pod: Obj) -> str | None:
    phase = (pod.get("status") or {}).get("phase")
    return str(phase) if phase else None


def _statuses(pod: Obj, key: str) -> list[Obj]:
    return list((pod.get("status") or {}).get(key) or [])


def termination_result(pods: Iterable[Obj]) -> dict[str, Any]:
    """The exec phase's result, copied by the kubelet from /dev/termination-log."""
    for pod in pods:
        for status in _statuses(pod, "containerStatuses"):
            if status.get("name") != TASK_CONTAINER:
                continue
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                try:
                    parsed = json.loads(message)
                except ValueError:
                    return {"termination_message": message}
                return dict(parsed) if isinstance(parsed, dict) else {}
    return {}


def container_failure(pods: Iterable[Obj]) -> tuple[int | None, str | None]:
    """Exit code and a sentence for the first container that ended badly."""
    for pod in pods:
        for key, role in (
            ("initContainerStatuses", "init container"),
            ("containerStatuses", "container"),
        ):
            for status in _statuses(pod, key):
                term = (status.get("state") or {}).get("terminated") or {}
                code = term.get("exitCode")
                if not term or code == 0:
                    continue
                name = status.get("name")
                why = term.get("reason") or "Error"
                if why == "OOMKilled":
                    return code, (
                        f"{role} {name} was killed for running out of memory "
                        f"(OOMKilled, exit code {code}): raise resources.memory"
                    )
                detail = (
                    f": {term['message'][:300]}"
                    if term.get("message") and not term["message"].startswith("{")
                    else ""
                )
                return code, f"{role} {name} exited with code {code} ({why}){detail}"
    return None, None


# Why a pod was taken away from its node (its DisruptionTarget condition's reason, or its
# status reason): these end an attempt whatever its containers said last.
DISRUPTIONS = {
    "Evicted": "evicted by the kubelet (the node ran short of memory or disk)",
    "TerminationByKubelet": "evicted by the kubelet (the node ran short of memory or disk)",
    "EvictionByEvictionAPI": "evicted through the Eviction API (a node drain)",
    "PreemptionByScheduler": "preempted by a pod of higher priority",
    "DeletionByTaintManager": "node lost: its node became unreachable and the pod was removed",
    "DeletionByPodGC": "node lost: its node no longer exists",
    "NodeLost": "node lost: its node stopped reporting",
}


def disruption(pods: Iterable[Obj]) -> str | None:
    """Why a pod was taken off its node (eviction, preemption, a lost node), or None."""
    for pod in pods:
        status = pod.get("status") or {}
        reasons = [status.get("reason")] + [
            c.get("reason")
            for c in status.get("conditions") or []
            if c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        ]
        for reason in reasons:
            if reason in DISRUPTIONS:
                node = (pod.get("spec") or {}).get("nodeName") or "?"
                detail = status.get("message") or ""
                why = f"{DISRUPTIONS[reason]} [{reason}, node {node}]"
                return f"{why}: {detail}".rstrip(": ")
    return None


def pending_problem(pods: Iterable[Obj], now: datetime, unschedulable_grace_s: float) -> str | None:
    """A reason to give up on a pod that has not started, or None while it may still start."""
    for pod in pods:
        for key in ("initContainerStatuses", "containerStatuses"):
            for status in _statuses(pod, key):
                waiting = (status.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in IMAGE_ERRORS:
                    message = waiting.get("message", "")
                    what = (
                        "is not in its registry" if "not found" in message else "cannot be pulled"
                    )
                    return (
                        f"image {status.get('image')!r} {what} "
                        f"({waiting['reason']}): {message}".rstrip(": ")
                    )
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") != "PodScheduled" or cond.get("status") != "False":
                continue
            if cond.get("reason") != "Unschedulable":
                continue
            since = _time(cond.get("lastTransitionTime"))
            if since is None or (now - since).total_seconds() >= unschedulable_grace_s:
                return f"unschedulable: {cond.get('message') or 'no node fits the pod'}"
    return None


def job_state(
    job: Obj, pods: Sequence[Obj], now: datetime, unschedulable_grace_s: float
) -> ExecutorState:
    conditions = _conditions(job)
    spec = job.get("spec") or {}
    result = termination_result(pods)
    if "Complete" in conditions:
        return ExecutorState("exited", 0, None, result)
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    lost = disruption(pods)
    if failed is not None or lost is not None:
        code, why = container_failure(pods)
        reason = (failed or {}).get("reason")
        if reason == "DeadlineExceeded":
            why = (
                f"timed out: the Job ran past activeDeadlineSeconds="
                f"{spec.get('activeDeadlineSeconds')} and Kubernetes stopped it"
            )
        elif lost is not None:
            why = lost  # its containers were killed for it: their exit code says nothing
        elif why is None:
            why = f"the Job failed ({reason}): {(failed or {}).get('message', '')}".rstrip(": ")
        return ExecutorState("exited", code, why, result)
    if "SuccessCriteriaMet" in conditions or any(_phase(p) == "Succeeded" for p in pods):
        # One pod, never restarted (backoffLimit 0): it succeeded, so the Job has. The Job
        # controller's Complete comes ~0.4 s after the pod's phase; the attempt need not wait.
        return ExecutorState("exited", 0, None, result)
    if spec.get("suspend"):
        return ExecutorState("running", reason="suspended: waiting for admission (Kueue)")
    problem = pending_problem(pods, now, unschedulable_grace_s)
    if problem:
        return ExecutorState("exited", None, problem, result)
    return ExecutorState("running")


def deployment_state(
    deployment: Obj, pods: Sequence[Obj], url: str, now: datetime, unschedulable_grace_s: float
) -> ExecutorState:
    """A service runs until stopped; `result` carries its URL and whether it is ready."""
    conditions = (deployment.get("status") or {}).get("conditions") or []
    by_type = {c["type"]: c for c in conditions}
    progressing = by_type.get("Progressing") or {}
    if (
        progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    ):
        problem = pending_problem(pods, now, 0) or progressing.get("message")
        return ExecutorState(
            "exited",
            None,
            f"service never became available: {problem}",
            {"url": url, "ready": False},
        )
    problem = pending_problem(pods, now, unschedulable_grace_s)
    if problem:
        return ExecutorState(
            "exited", None, f"service cannot start: {problem}", {"url": url, "ready": False}
        )
    available = (by_type.get("Available") or {}).get("status") == "True"
    ready = int((deployment.get("status") or {}).get("readyReplicas") or 0) > 0
    return ExecutorState("running", result={"url": url, "ready": available and ready})
