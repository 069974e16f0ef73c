"""The Kubernetes leader election against the real kube-apiserver of deploy/local: a
coordination.k8s.io Lease taken, renewed, expired, released, and never held by two."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from controller.config import Settings
from controller.election.kubernetes import KubernetesElection, _now, expired
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(120)]


@pytest.fixture
def lease_namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"tracectl-leader-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name)


def replica(api: client.ApiClient, namespace: str, holder: str) -> KubernetesElection:
    settings = Settings(leader_namespace=namespace, leader_lease_s=1)
    return KubernetesElection(settings, None, holder, api=api)


def lease_spec(api: client.ApiClient, namespace: str) -> client.V1LeaseSpec:
    lease = client.CoordinationV1Api(api).read_namespaced_lease("tracectl-controller", namespace)
    return lease.spec


def test_the_first_replica_creates_the_lease_and_the_second_waits_for_it_to_expire(
    api: client.ApiClient, lease_namespace: str
) -> None:
    a, b = replica(api, lease_namespace, "a"), replica(api, lease_namespace, "b")
    assert a.acquire() is True
    spec = lease_spec(api, lease_namespace)
    assert (spec.holder_identity, spec.lease_duration_seconds, spec.lease_transitions) == (
        "a",
        1,
        0,
    )
    assert b.acquire() is False
    assert a.renew() is True
    wait_for("a's lease to expire and b to take it", b.acquire, timeout=30)
    spec = lease_spec(api, lease_namespace)
    assert (spec.holder_identity, spec.lease_transitions) == ("b", 1)
    assert a.renew() is False  # a learns it lost the lease


def test_a_released_lease_is_taken_at_once(api: client.ApiClient, lease_namespace: str) -> None:
    a, b = replica(api, lease_namespace, "a"), replica(api, lease_namespace, "b")
    assert a.acquire() is True
    a.release()
    assert a.holder_of() is None
    assert b.acquire() is True
    assert b.holder_of() == "b"


def test_of_two_replicas_that_both_saw_the_lease_expire_only_one_takes_it(
    api: client.ApiClient, lease_namespace: str
) -> None:
    """Replay: b and c both read the expired Lease; c writes its claim first, then b."""
    a, b, c = (replica(api, lease_namespace, name) for name in "abc")
    assert a.acquire() is True

    def expired_lease() -> dict[str, Any] | None:
        lease = b._read()  # b's read, before its write
        return lease if lease is not None and expired(lease["spec"], _now()) else None

    stale = wait_for("a's lease to expire", expired_lease, timeout=30)
    assert c.acquire() is True  # c writes first: the Lease's resourceVersion moves on
    assert b._write(stale, _now()) is False  # what b read: 409
    assert b.holder_of() == "c"
