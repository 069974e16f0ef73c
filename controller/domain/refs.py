"""Executor references: how an executor finds one attempt again, one model per kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    SerializerFunctionWrapHandler,
    model_serializer,
)


class _Ref(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_serializer(mode="wrap")
    def _without_nones(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Unset optional parts are left out: the API and the store show only what is known.
        data = {k: v for k, v in handler(self).items() if v is not None}
        return {"kind": data.pop("kind"), **data}


class _Process(_Ref):
    """A runner process on the controller's host, told apart from a reused PID by its start
    time. A runner found ended after a restart has no pid (nothing may signal the number)."""

    host: str
    pid: int | None = None
    create_time: float | None = None
    ended_runner_pid: str | None = None


class LocalRef(_Process):
    """A job's runner process on the local executor."""

    kind: Literal["local"] = "local"

    @property
    def mode(self) -> str:
        return "job"


class ServiceRef(_Process):
    """A `mode: service` runner process on the local executor, serving on a loopback port;
    `url` and `ready` are written once the port accepts connections."""

    kind: Literal["local-service"] = "local-service"
    port: int
    ready_timeout_s: float
    url: str | None = None
    ready: bool | None = None

    @property
    def mode(self) -> str:
        return "service"


class K8sRef(_Ref):
    """A Kubernetes Job (`object: job`) or Deployment with its Service (`object: service`)."""

    kind: Literal["k8s"] = "k8s"
    object: Literal["job", "service"]
    namespace: str
    name: str
    uid: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    url: str | None = None
    ingress_path: str | None = None
    ready: bool | None = None

    @property
    def mode(self) -> str:
        return self.object


class ExternalRef(_Ref):
    """An HTTP call to a registered external system, running in a controller thread."""

    kind: Literal["external"] = "external"
    system: str
    method: str
    path: str
    key: str  # task id / attempt

    @property
    def mode(self) -> str:
        return "external"


def _upgrade(data: Any) -> Any:
    """The shapes written before references had a model: no kind (local), `service` for
    both local and Kubernetes services, `job` for a Kubernetes Job."""
    if not isinstance(data, Mapping) or data.get("kind") in _KINDS:
        return data
    kind = data.get("kind")
    if "namespace" in data and kind in ("job", "service"):
        return {**data, "kind": "k8s", "object": kind}
    if kind == "service":
        return {**data, "kind": "local-service"}
    if kind is None:
        return {**data, "kind": "local"}
    return data


_KINDS = ("local", "local-service", "k8s", "external")

ExecutorRef = Annotated[
    LocalRef | ServiceRef | K8sRef | ExternalRef,
    Field(discriminator="kind"),
    BeforeValidator(_upgrade),
]
# An event or record field: events written before references had a model hold {} for none.
MaybeRef = Annotated[ExecutorRef | None, BeforeValidator(lambda data: data or None)]
ServiceRefs = (ServiceRef, K8sRef)  # the references that can carry a service's URL


class _AnyRef(RootModel[ExecutorRef]):
    pass


def parse_ref(data: Mapping[str, Any] | None) -> ExecutorRef | None:
    """The reference a store row or an event holds (old shapes included); None for none."""
    return _AnyRef.model_validate(data).root if data else None


def dump_ref(ref: ExecutorRef | None) -> dict[str, Any] | None:
    return ref.model_dump(mode="json") if ref is not None else None


def executor_record(executor: str | None, ref: ExecutorRef | None) -> dict[str, Any]:
    """What the lineage records of where an attempt ran: the executor's name (`kind`) and
    its reference's details."""
    details = dump_ref(ref) or {}
    details.pop("kind", None)
    return {"kind": executor, **details}
