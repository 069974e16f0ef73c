"""Scratch Kubernetes namespaces and local claims, shared by tests/stack and tests/kubernetes."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tests.waiting import wait_for

if TYPE_CHECKING:
    from kubernetes import client


@contextlib.contextmanager
def scratch_namespace(core: client.CoreV1Api, prefix: str) -> Iterator[str]:
    """A new namespace PREFIX-<hex>, once its default ServiceAccount exists (a pod needs it),
    deleted afterwards."""
    from kubernetes import client

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        f"the default ServiceAccount of {name} (serviceaccount controller)",
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
    )
    yield name
    delete_namespace(core, name)


def delete_namespace(core: client.CoreV1Api, name: str) -> None:
    """Delete namespace NAME and give the PVs its claims held back to the pool: their `Retain`
    policy leaves them Released, and deploy/local refills the pool only on `start` (a run of
    the whole suite would use up the real node's six local PVs)."""
    claims = core.list_namespaced_persistent_volume_claim(name).items
    volumes = [c.spec.volume_name for c in claims if c.spec and c.spec.volume_name]
    core.delete_namespace(name)
    for volume in volumes:

        def released(volume: str = volume) -> str:
            from kubernetes import client

            try:  # a test may delete the PV it made itself: nothing to give back
                status = core.read_persistent_volume(volume).status
            except client.ApiException as exc:
                return "gone" if exc.status == 404 else ""
            return "released" if status is not None and status.phase == "Released" else ""

        if wait_for(f"{volume} to be released", released, 300) == "released":
            core.patch_persistent_volume(volume, {"spec": {"claimRef": None}})


def local_claim(core: client.CoreV1Api, namespace: str, name: str, storage_class: str) -> None:
    """A 1Gi ReadWriteOnce claim NAME, bound to one of the real node's local PVs when a pod
    first uses it."""
    from kubernetes import client

    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name=storage_class,
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
