"""A scratch Kubernetes namespace, shared by tests/stack and tests/kubernetes."""

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
    core.delete_namespace(name)
