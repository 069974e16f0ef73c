"""Runs task attempts on Kubernetes: a Job per attempt (`mode: job`), a Deployment and a
Service per long-running service (`mode: service`).

Objects are named per attempt (`tracectl-<task>-<attempt>`), so a launch repeated after a
crash meets its own Job (409) and adopts it. Status comes from a list-then-watch cache per
namespace (k8s_watch); inspect() reads it and falls back to a GET when the cache has
nothing yet. Pod logs are followed into the log sink (k8s_logs). Every manifest is built in
k8s_manifests; every status mapping lives in k8s_status.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from controller.config import ClusterConfig, Settings
from controller.domain.launch import LaunchDocument
from controller.domain.refs import ExecutorRef, K8sRef
from controller.domain.spec import TaskMode
from controller.executors import k8s_manifests as manifests
from controller.executors import k8s_status as status
from controller.executors.k8s_logs import AttemptLog, LogCursor, follow
from controller.executors.k8s_watch import Informer, ObjectCache
from controller.logs.file_sink import FileLogReader, file_record
from controller.ports import ExecutorState, Launch, LogSinkFactory

log = logging.getLogger("tracectl.k8s")
CONTAINERS = (("prepare", "system"), ("task", "stdout"))
LOG_NOTE = "tracectl: pod log stream"
CANCEL_WAIT_S = 30.0
CREATE_TIMEOUT_S = 30.0
JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{namespace}/deployments"
SECRETS = "/api/v1/namespaces/{namespace}/secrets"
SERVICES = "/api/v1/namespaces/{namespace}/services"
INGRESSES = "/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses"


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """From KUBECONFIG, or the pod's service account when running inside the cluster."""
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg
        )
    else:
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=cfg
            )
        except config.ConfigException:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                client_configuration=cfg
            )
    cfg.connection_pool_maxsize = 64  # concurrent launches and watches share one pool
    return client.ApiClient(cfg)


def _raw(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response.data)
    return body


def _read(read: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """GET one object with the generated client's READ; None when it does not exist."""
    try:
        return _raw(read(name, namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


class RuntimeImageError(ValueError):
    """TRACECTL_K8S_IMAGE is missing, or a tag where the policy wants a digest."""


def check_runtime_image(cluster: ClusterConfig, preflight: str) -> None:
    """The runtime image every pod's `prepare` runs is named by digest, as `tracectl image
    build` prints it; a tag is refused under `image.mutable_tag=refuse`, else logged."""
    how = "run `tracectl image build` (or `deploy/local/registry image`) and set it to the "
    how += "name@sha256:<digest> reference it prints"
    if cluster.image is None:
        raise RuntimeImageError(f"TRACECTL_K8S_IMAGE is not set: {how}")
    if cluster.image_pinned:
        return
    # The preflight policy's own parser lives in core; executors import nothing from there.
    if "image.mutable_tag=refuse" in preflight.replace(" ", ""):
        raise RuntimeImageError(f"TRACECTL_K8S_IMAGE={cluster.image!r} is a tag: {how}")
    log.warning("TRACECTL_K8S_IMAGE=%s is a tag, not a digest: %s", cluster.image, how)


def _now() -> datetime:
    return datetime.now(UTC)


class KubernetesExecutor:
    name = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        cluster: ClusterConfig | None = None,
        api: client.ApiClient | None = None,
        log_sinks: LogSinkFactory | None = None,
    ) -> None:
        self.settings = settings
        self.log_sinks = log_sinks or file_record(settings)
        self.cluster = cluster or settings.k8s
        check_runtime_image(self.cluster, settings.preflight)
        self.api = api or api_client(self.cluster.kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.cache = ObjectCache()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._informers: dict[tuple[str, str], Informer] = {}
        self._namespaces: set[str] = set()
        self._followers: dict[tuple[str, str], threading.Event] = {}

    # -- the Executor protocol ------------------------------------------------------------
    def launch(self, launch: Launch) -> K8sRef:
        namespace = self.namespace_of(launch.document)
        self._ensure_namespace(namespace)
        self.watch_namespace(namespace)
        name = manifests.object_name(launch.task_id, launch.attempt)
        ids = {"run_id": launch.run_id, "task_id": launch.task_id, "attempt": launch.attempt}
        if launch.spec.mode == TaskMode.SERVICE:
            ref = self._launch_service(launch, namespace, name, ids)
        else:
            ref = self._launch_job(launch, namespace, name, ids)
        self._ensure_follower(ref)
        return ref

    def find(self, launch: Launch) -> K8sRef | None:
        namespace = self.namespace_of(launch.document)
        selector = manifests.selector_of(launch.task_id, launch.attempt)
        ids = {"run_id": launch.run_id, "task_id": launch.task_id, "attempt": launch.attempt}
        for kind, list_fn in (
            ("job", self.batch.list_namespaced_job),
            ("service", self.apps.list_namespaced_deployment),
        ):
            try:
                items = _raw(list_fn(namespace, label_selector=selector, _preload_content=False))[
                    "items"
                ]
            except ApiException as exc:
                if exc.status == 404:
                    continue  # the namespace itself is gone
                raise
            for obj in items:
                meta = obj["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                if _read(self.core.read_namespaced_secret, namespace, meta["name"]) is None:
                    # cut off before its launch Secret: launching again adopts the object
                    # (409) and creates the Secret its pods wait for
                    return None
                url = manifests.service_url(meta["name"], namespace) if kind == "service" else None
                ref = K8sRef.model_validate(
                    {"object": kind, "namespace": namespace, "name": meta["name"]}
                    | {"uid": meta["uid"], "url": url, **ids}
                )
                self.watch_namespace(namespace)
                self._ensure_follower(ref)
                return ref
        return None

    def inspect(self, ref: ExecutorRef, workspace: Path) -> ExecutorState:
        ref = _k8s(ref)
        namespace, name = ref.namespace, ref.name
        self.watch_namespace(namespace)
        if ref.object == "service":
            return self._inspect_service(ref)
        job = self._current("job", namespace, name, self.batch.read_namespaced_job)
        if job is None or (ref.uid and job["metadata"]["uid"] != ref.uid):
            return ExecutorState(
                "missing",
                reason=f"the Job {namespace}/{name} no longer "
                "exists (deleted outside tracectl, or its namespace was)",
            )
        finished = bool(
            {"Complete", "Failed", "FailureTarget"}
            & {
                c["type"]
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("status") == "True"
            }
        )
        pods = self._pods(namespace, name, fresh=finished)
        state = status.job_state(job, pods, _now(), self.cluster.unschedulable_grace_s)
        if state.phase == "running":
            self._ensure_follower(ref)
        return state

    def cancel(self, ref: ExecutorRef, grace_s: float) -> None:
        """Delete the Job (or Deployment) in the foreground: pods get SIGTERM, and SIGKILL
        after their terminationGracePeriodSeconds (the controller's cancel grace)."""
        ref = _k8s(ref)
        namespace, name = ref.namespace, ref.name
        delete = (
            self.apps.delete_namespaced_deployment
            if ref.object == "service"
            else self.batch.delete_namespaced_job
        )
        kind = "deployment" if ref.object == "service" else "job"
        options = client.V1DeleteOptions(propagation_policy="Foreground")
        try:
            delete(name, namespace, body=options)
        except ApiException as exc:
            if exc.status != 404:
                raise
        self.cache.wait(
            lambda: self.cache.get(kind, namespace, name) is None, grace_s + CANCEL_WAIT_S
        )

    def cleanup(self, ref: ExecutorRef) -> None:
        """The attempt ended: stop following its logs and drop its Secret at once (the Job
        itself stays for `kubectl describe` until ttlSecondsAfterFinished)."""
        ref = _k8s(ref)
        namespace, name = ref.namespace, ref.name
        stop = self._followers.pop((namespace, name), None)
        if stop is not None:
            stop.set()
        deletes = [self.core.delete_namespaced_secret]
        if ref.object == "service":
            deletes.insert(0, self.apps.delete_namespaced_deployment)
        for delete in deletes:
            try:
                delete(
                    name, namespace, body=client.V1DeleteOptions(propagation_policy="Foreground")
                )
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("cleanup of %s/%s: %s", namespace, name, exc.reason)

    # -- beyond the protocol --------------------------------------------------------------
    def namespace_of(self, doc: LaunchDocument) -> str:
        return manifests.namespace_for(self.cluster, doc.labels.team)

    def watch_namespace(self, namespace: str) -> None:
        """Start (once) the informers that keep this namespace's objects in the cache."""
        with self._lock:
            for kind, list_fn in (
                ("job", self.batch.list_namespaced_job),
                ("pod", self.core.list_namespaced_pod),
                ("deployment", self.apps.list_namespaced_deployment),
            ):
                if (kind, namespace) in self._informers:
                    continue
                informer = Informer(
                    self.cache, kind, namespace, list_fn, manifests.MANAGED_SELECTOR, self._stop
                )
                self._informers[(kind, namespace)] = informer
                informer.start()

    def informer(self, kind: str, namespace: str) -> Informer | None:
        return self._informers.get((kind, namespace))

    def wait_ready(self, ref: K8sRef, timeout: float) -> ExecutorState:
        """Block until a service is available (or ended); its state either way."""
        deadline = time.monotonic() + timeout
        state = self.inspect(ref, Path())
        while state.phase == "running" and not (state.result or {}).get("ready"):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.cache.wait(lambda: False, min(left, 0.5))
            state = self.inspect(ref, Path())
        return state

    def close(self) -> None:
        self._stop.set()
        for stop in list(self._followers.values()):
            stop.set()
        for informer in list(self._informers.values()):
            informer.close()

    # -- launching ------------------------------------------------------------------------
    def _ensure_namespace(self, namespace: str) -> None:
        if namespace in self._namespaces:
            return
        if self.cluster.create_namespaces:
            try:
                self.core.create_namespace(manifests.namespace(namespace), _preload_content=False)
            except ApiException as exc:
                # 409: it exists; 403: namespaces are an administrator's job (see the docs)
                if exc.status not in (403, 409):
                    raise
        self._namespaces.add(namespace)

    def _create(self, path: str, namespace: str, body: Any) -> dict[str, Any] | None:
        """POST BODY (a typed manifest) to the collection PATH; None when it exists already
        (a repeated launch adopts it). The body is serialized once, by pydantic, and sent as
        is: the generated client would walk it twice more (sanitize, then json.dumps)."""
        method, url, headers, _body, _post = self.api.param_serialize(
            "POST",
            path,
            path_params={"namespace": namespace},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.rest_client.pool_manager.request(
            method, url, body=manifests.to_json(body), headers=headers, timeout=CREATE_TIMEOUT_S
        )
        if response.status == 409:
            return None
        if not 200 <= response.status <= 299:
            raise ApiException(
                status=response.status,
                reason=response.reason,
                body=response.data.decode("utf-8", "replace"),
            )
        created: dict[str, Any] = json.loads(response.data)
        return created

    def _create_owner_with_secret(
        self, kind: str, launch: Launch, namespace: str, name: str, body: Any
    ) -> tuple[str, Any]:
        """Create the attempt's owning object (Job or Deployment), or adopt it after a
        repeated launch (409), then complete the launch and create its launch Secret owned
        by the object. No pod starts before the Secret exists (it mounts it), so the
        tracking run is made after the object, off the dispatch path. (uid, owner ref)."""
        api_version, create, read, delete = {
            "Job": (
                "batch/v1",
                JOBS,
                self.batch.read_namespaced_job,
                self.batch.delete_namespaced_job,
            ),
            "Deployment": (
                "apps/v1",
                DEPLOYMENTS,
                self.apps.read_namespaced_deployment,
                self.apps.delete_namespaced_deployment,
            ),
        }[kind]
        created = self._create(create, namespace, body)
        obj = created or _raw(read(name, namespace, _preload_content=False))
        uid: str = obj["metadata"]["uid"]
        owner = manifests.owner_reference(kind, api_version, name, uid)
        try:
            doc = launch.completed().document
            self._create(
                SECRETS,
                namespace,
                manifests.launch_secret(doc, self.cluster, name, owner),
            )
        except Exception:
            if created is not None:  # without its launch document it would never start
                self._delete_quietly(delete, name, namespace)
            raise
        return uid, owner

    def _launch_job(self, launch: Launch, namespace: str, name: str, ids: dict[str, Any]) -> K8sRef:
        uid, _owner = self._create_owner_with_secret(
            "Job",
            launch,
            namespace,
            name,
            manifests.job(launch.document, self.cluster, name),
        )
        return K8sRef(object="job", namespace=namespace, name=name, uid=uid, **ids)

    def _launch_service(
        self, launch: Launch, namespace: str, name: str, ids: dict[str, Any]
    ) -> K8sRef:
        doc = launch.document
        uid, owner = self._create_owner_with_secret(
            "Deployment",
            launch,
            namespace,
            name,
            manifests.deployment(doc, self.cluster, name),
        )
        self._create(SERVICES, namespace, manifests.service(doc, self.cluster, name, owner))
        path = None
        if self.cluster.ingress_prefix:
            path = f"{self.cluster.ingress_prefix.rstrip('/')}/{name}"
            self._create(
                INGRESSES, namespace, manifests.ingress(doc, self.cluster, name, path, owner)
            )
        url = manifests.service_url(name, namespace)
        return K8sRef(
            object="service",
            namespace=namespace,
            name=name,
            uid=uid,
            url=url,
            ingress_path=path,
            **ids,
        )

    @staticmethod
    def _delete_quietly(delete: Any, name: str, namespace: str) -> None:
        try:
            delete(name, namespace, body=client.V1DeleteOptions(propagation_policy="Background"))
        except ApiException:
            log.warning("could not delete %s/%s after a failed launch", namespace, name)

    # -- status ---------------------------------------------------------------------------
    def _current(self, kind: str, namespace: str, name: str, read: Any) -> dict[str, Any] | None:
        obj = self.cache.get(kind, namespace, name)
        return obj if obj is not None else _read(read, namespace, name)

    def _pods(
        self, namespace: str, owner_name: str, fresh: bool, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        want = labels or {"job-name": owner_name}
        if not fresh:
            pods = self.cache.select("pod", namespace, want)
            informer = self.informer("pod", namespace)
            if pods or (informer is not None and informer.synced.is_set()):
                return pods  # a synced watch is the truth: no pod yet (suspended, pending)
        selector = ",".join(f"{k}={v}" for k, v in want.items())
        items: list[dict[str, Any]] = _raw(
            self.core.list_namespaced_pod(
                namespace, label_selector=selector, _preload_content=False
            )
        )["items"]
        return items

    def _service_pod_labels(self, ref: K8sRef) -> dict[str, str]:
        return {
            manifests.TASK_LABEL: manifests.label_value(str(ref.task_id)),
            manifests.ATTEMPT_LABEL: str(ref.attempt),
        }

    def _inspect_service(self, ref: K8sRef) -> ExecutorState:
        namespace, name = ref.namespace, ref.name
        dep = self._current("deployment", namespace, name, self.apps.read_namespaced_deployment)
        if dep is None or dep["metadata"].get("deletionTimestamp") is not None:
            return ExecutorState(
                "missing",
                reason=f"the service {namespace}/{name} was stopped (its Deployment is gone)",
                result={"url": ref.url, "ready": False},
            )
        pods = self._pods(namespace, name, fresh=False, labels=self._service_pod_labels(ref))
        state = status.deployment_state(
            dep, pods, str(ref.url), _now(), self.cluster.unschedulable_grace_s
        )
        if state.phase == "running":
            self._ensure_follower(ref)
        return state

    # -- logs -----------------------------------------------------------------------------
    def _ensure_follower(self, ref: K8sRef) -> None:
        if not self.cluster.follow_logs or ref.task_id is None:
            return
        key = (ref.namespace, ref.name)
        with self._lock:
            if key in self._followers or self._stop.is_set():
                return
            stop = threading.Event()
            self._followers[key] = stop
        threading.Thread(
            target=self._follow_attempt,
            args=(ref, stop),
            name=f"k8s-logs-{ref.name}",
            daemon=True,
        ).start()

    def _follow_attempt(self, ref: K8sRef, stop: threading.Event) -> None:
        run_id, task_id, attempt = str(ref.run_id), str(ref.task_id), int(ref.attempt or 0)
        labels = {
            "run_id": run_id,
            "task_id": task_id,
            "attempt": str(attempt),
            "executor": "kubernetes",
            # ECS orchestrator.*: the attempt's Job or Deployment (its pod is found later)
            "namespace": ref.namespace,
            "object_kind": "deployment" if ref.object == "service" else "job",
            "object_name": ref.name,
        }
        first_seq, cursors = self._resume_point(run_id, task_id, attempt)
        out = AttemptLog(self.log_sinks(labels), run_id, task_id, attempt, first_seq)
        threads = [
            threading.Thread(
                target=follow,
                daemon=True,
                name=f"k8s-log-{ref.name}-{container}",
                args=(
                    self._opener(ref, container, stop),
                    cursors[stream],
                    out,
                    stream,
                    lambda c=container: self._container_ended(ref, c),
                    stop,
                ),
            )
            for container, stream in CONTAINERS
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out.close()

    def _resume_point(
        self, run_id: str, task_id: str, attempt: int
    ) -> tuple[int, dict[str, LogCursor]]:
        """After a controller restart: go on from the lines the file record already has."""
        cursors = {stream: LogCursor() for _c, stream in CONTAINERS}
        reader = FileLogReader(self.settings)
        count = int(reader.summary(run_id, task_id, attempt)["lines"])
        last_seq = 0
        for line in reader.read(run_id, task_id, attempt, max(0, count - 2000), 2000):
            last_seq = line.seq
            cursor = cursors.get(line.stream)
            if cursor is None or line.message.startswith(LOG_NOTE):
                continue
            nanos = round(line.timestamp.timestamp() * 1e6) * 1000
            cursor.admit(nanos)
        return last_seq, cursors

    def _task_pods(self, ref: K8sRef) -> list[dict[str, Any]]:
        if ref.object == "service":
            return self.cache.select("pod", ref.namespace, self._service_pod_labels(ref))
        return self.cache.select("pod", ref.namespace, {"job-name": ref.name})

    def _container_state(self, ref: K8sRef, container: str) -> tuple[str | None, dict[str, Any]]:
        """(pod name, state) of the newest pod of the attempt that has the container."""
        pods = sorted(
            self._task_pods(ref),
            key=lambda p: str(p["metadata"].get("creationTimestamp")),
            reverse=True,
        )
        for pod in pods:
            status_ = pod.get("status") or {}
            for item in (status_.get("initContainerStatuses") or []) + (
                status_.get("containerStatuses") or []
            ):
                if item.get("name") == container:
                    return pod["metadata"]["name"], item.get("state") or {}
        return None, {}

    def _container_ended(self, ref: K8sRef, container: str) -> bool:
        if self._stop.is_set():
            return True
        _pod, state = self._container_state(ref, container)
        if "terminated" in state:
            return True
        kind = "deployment" if ref.object == "service" else "job"
        informer = self.informer(kind, ref.namespace)
        synced = informer is not None and informer.synced.is_set()
        return synced and self.cache.get(kind, ref.namespace, ref.name) is None

    def _opener(self, ref: K8sRef, container: str, stop: threading.Event) -> Any:
        def open_stream(since: str | None) -> Iterable[str]:
            pod = None
            while not stop.is_set():
                pod, state = self._container_state(ref, container)
                if pod and ("running" in state or "terminated" in state):
                    break
                if self._container_ended(ref, container):
                    return []
                self.cache.wait(lambda: stop.is_set(), 1.0)
            if pod is None or stop.is_set():
                return []
            response = pod_log_stream(
                self.api, ref.namespace, pod, container, since, self.cluster.log_idle_s
            )
            return _until_quiet(iter_resp_lines(response))  # type: ignore[no-untyped-call]

        return open_stream


def _k8s(ref: ExecutorRef) -> K8sRef:
    if not isinstance(ref, K8sRef):
        raise TypeError(f"the Kubernetes executor was handed a {ref.kind!r} reference")
    return ref


def pod_log_stream(
    api: client.ApiClient,
    namespace: str,
    pod: str,
    container: str,
    since: str | None,
    idle_s: float,
) -> Any:
    """GET pods/log with follow and timestamps, from SINCE (RFC 3339, second precision).

    The generated client has no `sinceTime` parameter (only sinceSeconds, relative to the
    server's clock), so the request is built here with the client's own auth and pool."""
    query: list[tuple[str, Any]] = [
        ("container", container),
        ("follow", "true"),
        ("timestamps", "true"),
    ]
    if since:
        query.append(("sinceTime", since))
    method, url, headers, body, post = api.param_serialize(
        "GET",
        "/api/v1/namespaces/{namespace}/pods/{name}/log",
        path_params={"namespace": namespace, "name": pod},
        query_params=query,
        # the body is plain text either way; the API server negotiates its error bodies
        # against Accept, and answers 406 to text/plain alone (as the generated client sends)
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, body, post, _request_timeout=(10, idle_s))
    if not 200 <= response.status <= 299:
        response.read()  # type: ignore[no-untyped-call]
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return response.response


def _until_quiet(lines: Iterable[str | bytes]) -> Iterator[str]:
    """The lines of one connection; a stream quiet for the idle timeout ends the connection
    (the follower reconnects from its cursor, or stops when the container has ended: KWOK's
    log server, unlike a kubelet, never closes a followed stream)."""
    try:
        for line in lines:
            yield line.decode("utf-8", "backslashreplace") if isinstance(line, bytes) else line
    except (ReadTimeoutError, ProtocolError):
        return
