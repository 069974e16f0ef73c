"""The leader lease as a Kubernetes `coordination.k8s.io/v1` Lease, as client-go's leaderelection.

Each step reads the Lease and writes it back with the resourceVersion it read: the API server
refuses (409) a write over a newer one, so of two replicas that both saw it expire exactly one
takes it. A take-over counts in `leaseTransitions`; the fencing epoch stays the store's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.config import Settings
from controller.executors.kubernetes import api_client
from controller.store.database import Database

POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"  # a MicroTime, always six digits


def _now() -> datetime:
    return datetime.now(UTC)


def _namespace(settings: Settings) -> str:
    if settings.leader_namespace:
        return settings.leader_namespace
    return POD_NAMESPACE.read_text().strip() if POD_NAMESPACE.exists() else "default"


def expired(spec: dict[str, Any], now: datetime) -> bool:
    """Whether the lease in SPEC ran out (or was released) by NOW."""
    renewed, duration = spec.get("renewTime"), spec.get("leaseDurationSeconds")
    if not spec.get("holderIdentity") or not renewed or not duration:
        return True
    at = datetime.fromisoformat(renewed.replace("Z", "+00:00"))
    return at + timedelta(seconds=duration) < now


class KubernetesElection:
    def __init__(
        self,
        settings: Settings,
        db: Database | None,
        holder: str,
        api: client.ApiClient | None = None,
    ) -> None:
        # raw JSON bodies both ways (as the executor's): the Lease is read, changed, written
        self.api: Any = client.CoordinationV1Api(api or api_client(settings.k8s.kubeconfig))
        self.holder, self.name = holder, settings.leader_lease_name
        self.namespace = _namespace(settings)
        self.duration = max(1, round(settings.leader_lease_s))

    def acquire(self) -> bool:
        now = _now()
        lease = self._read()
        if lease is None:
            return self._create(now)
        spec = lease.setdefault("spec", {})
        if spec.get("holderIdentity") != self.holder:
            if not expired(spec, now):
                return False
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now.strftime(MICRO)
        return self._write(lease, now)

    def renew(self) -> bool:
        lease = self._read()
        if lease is None or lease.get("spec", {}).get("holderIdentity") != self.holder:
            return False
        return self._write(lease, _now())

    def release(self) -> None:
        lease = self._read()
        if lease is None or lease.get("spec", {}).get("holderIdentity") != self.holder:
            return
        lease["spec"]["holderIdentity"] = None
        self._replace(lease)

    def holder_of(self) -> str | None:
        """Who holds the Lease now (None when nobody does)."""
        lease = self._read()
        return None if lease is None else lease.get("spec", {}).get("holderIdentity")

    def _write(self, lease: dict[str, Any], now: datetime) -> bool:
        spec = lease["spec"]
        spec["holderIdentity"], spec["renewTime"] = self.holder, now.strftime(MICRO)
        spec["leaseDurationSeconds"] = self.duration
        return self._replace(lease)

    def _replace(self, lease: dict[str, Any]) -> bool:
        try:  # carries the resourceVersion read: a newer write in between answers 409
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _create(self, now: datetime) -> bool:
        stamp = now.strftime(MICRO)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            self.api.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False  # another replica made it first
            raise
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            response = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        lease: dict[str, Any] = json.loads(response.data)
        return lease
