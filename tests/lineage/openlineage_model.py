"""tracectl's OpenLineage events read back into openlineage-python's generated model, strictly.

openlineage-python's classes (`openlineage.client.event_v2`, the facets under
`openlineage.client.generated`) are generated from the published OpenLineage.json and facet
schemas: their fields, which are required, and their validators (UUID runIds, ISO date-times,
URLs). attrs checks neither field types nor unknown keys, so `parse_event` does, walking the
classes' own type hints: an unknown or missing field, a wrong JSON type, a null (the schemas
type optional fields as strings, numbers …, never null), an unknown facet or a facet whose
`_schemaURL` is not its class's, a non-canonical UUID, or a date-time without a time zone all
raise `InvalidEvent`. tracectl's custom facets are declared here the way an integration
declares its own: as subclasses of the spec's base facets.
"""

from __future__ import annotations

import types
import typing
import uuid
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import urlparse

import attr
from openlineage.client.event_v2 import RunEvent
from openlineage.client.generated.base import (
    DatasetFacet,
    InputDatasetFacet,
    JobFacet,
    OutputDatasetFacet,
    RunFacet,
)
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.parent_run import ParentRunFacet
from openlineage.client.generated.source_code_location_job import SourceCodeLocationJobFacet
from openlineage.client.serde import Serde

from controller.lineage.openlineage import CUSTOM


class InvalidEvent(ValueError):
    pass


# -- tracectl's custom facets (docs/lineage.md, "OpenLineage") --------------------------------
@attr.define
class EnvironmentFacet(RunFacet):
    image: str | None = attr.field(default=None)
    python_version: str | None = attr.field(default=None)
    pip_freeze_sha256: str | None = attr.field(default=None)
    kind: str | None = attr.field(default=None)
    key: str | None = attr.field(default=None)
    lockFile: str | None = attr.field(default=None)
    lockSha256: str | None = attr.field(default=None)
    packages: list[str] = attr.field(factory=list)
    packagesUri: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return f"{CUSTOM}#EnvironmentFacet"


@attr.define
class TaskFacet(RunFacet):
    run_id: str
    task_id: str
    task_name: str
    attempt: int
    params: dict[str, Any]
    airflow_dag_id: str | None = attr.field(default=None)
    airflow_run_id: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return f"{CUSTOM}#TaskFacet"


@attr.define
class MlflowRunFacet(RunFacet):
    trackingUri: str  # the facet keeps MLflow's own camelCase names
    experimentId: str
    runId: str

    @staticmethod
    def _get_schema() -> str:
        return f"{CUSTOM}#MlflowRunFacet"


@attr.define
class LeasesFacet(RunFacet):
    leases: list[dict[str, Any]]

    @staticmethod
    def _get_schema() -> str:
        return f"{CUSTOM}#LeasesFacet"


@attr.define
class LogsFacet(RunFacet):
    api: str
    lines: int | None = attr.field(default=None)
    sha256: str | None = attr.field(default=None)
    archiveUri: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return f"{CUSTOM}#LogsFacet"


@attr.define
class DvcDatasetFacet(DatasetFacet):
    md5: str
    rev: str
    remote: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return f"{CUSTOM}#DvcDatasetFacet"


@attr.define
class ArtifactFacet(DatasetFacet):
    path: str
    sha256: str
    size: int | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return f"{CUSTOM}#ArtifactFacet"


# Which class reads a facet, by the base class the spec gives its map and the facet's key.
FACETS: dict[type, dict[str, type]] = {
    RunFacet: {
        "parent": ParentRunFacet,
        "errorMessage": ErrorMessageRunFacet,
        "tracectl_environment": EnvironmentFacet,
        "tracectl_task": TaskFacet,
        "mlflow": MlflowRunFacet,
        "tracectl_leases": LeasesFacet,
        "tracectl_logs": LogsFacet,
    },
    JobFacet: {"sourceCodeLocation": SourceCodeLocationJobFacet},
    DatasetFacet: {
        "version": DatasetVersionDatasetFacet,
        "dvc": DvcDatasetFacet,
        "tracectl_artifact": ArtifactFacet,
    },
    InputDatasetFacet: {},
    OutputDatasetFacet: {},
}
# Required by the schemas although the classes default them (they fill in their own values).
SPEC_REQUIRED = {"producer", "schemaURL", "_producer", "_schemaURL"}
URI_FIELDS = {"producer", "schemaURL", "_producer", "_schemaURL"}


def parse_event(data: Any) -> RunEvent:
    """DATA as openlineage-python's RunEvent; InvalidEvent names the first thing wrong."""
    event = _build(RunEvent, data, "$")
    _check_time(event.eventTime)
    return event


def round_trip(data: Any) -> dict[str, Any]:
    """DATA parsed, then serialized by openlineage-python's own Serde, less the empty maps and
    lists the model writes by default where DATA has none (`inputFacets`, a parent's `facets`
    …): they say nothing. Anything else that differs from DATA was lost or changed."""
    return without_added_empties(Serde.to_dict(parse_event(data)), data)


def without_added_empties(serialized: Any, original: Any) -> Any:
    if isinstance(serialized, dict) and isinstance(original, dict):
        return {
            key: without_added_empties(value, original.get(key))
            for key, value in serialized.items()
            if key in original or value not in ({}, [])
        }
    if (
        isinstance(serialized, list)
        and isinstance(original, list)
        and len(serialized) == len(original)
    ):
        return [without_added_empties(s, o) for s, o in zip(serialized, original, strict=True)]
    return serialized


def _build(cls: type, data: Any, loc: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidEvent(f"{loc}: expected an object for {cls.__name__}, got {data!r}")
    fields = {f.name: f for f in attr.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidEvent(f"{loc}: {cls.__name__} has no field {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is attr.NOTHING or name in SPEC_REQUIRED:
                raise InvalidEvent(f"{loc}: {cls.__name__} requires {name!r}")
            continue
        value = _value(hints[name], data[name], f"{loc}.{name}")
        if name in URI_FIELDS:
            _check_uri(value, f"{loc}.{name}")
        if field.init:
            kwargs[field.alias] = value
        else:
            fixed[name] = value
    try:
        built = cls(**kwargs)
    except (ValueError, TypeError) as exc:  # the generated validators: UUID, date-time, URL
        raise InvalidEvent(f"{loc}: {cls.__name__}: {exc}") from exc
    for name, value in fixed.items():  # schema URLs: the class sets its own on construction
        if getattr(built, name) != value:
            raise InvalidEvent(f"{loc}.{name}: {value!r} is not {getattr(built, name)!r}")
    if "runId" in fields and cls is not MlflowRunFacet:  # MLflow run ids are not UUIDs
        _check_uuid(data["runId"], f"{loc}.runId")
    return built


def _value(tp: Any, value: Any, loc: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            raise InvalidEvent(f"{loc}: null is not a valid value")
        options = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        errors = []
        for option in options:
            try:
                return _value(option, value, loc)
            except InvalidEvent as exc:
                errors.append(str(exc))
        raise InvalidEvent("; ".join(errors))
    if origin is list:
        if not isinstance(value, list):
            raise InvalidEvent(f"{loc}: expected an array, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_value(item, v, f"{loc}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidEvent(f"{loc}: expected an object, got {value!r}")
        _, item = typing.get_args(tp)
        if item in FACETS:
            return {
                name: _build(_facet_class(item, name, f"{loc}.{name}"), v, f"{loc}.{name}")
                for name, v in value.items()
            }
        return {str(k): _value(item, v, f"{loc}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError as exc:
            raise InvalidEvent(f"{loc}: {exc}") from exc
    if attr.has(tp):
        return _build(tp, value, loc)
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidEvent(f"{loc}: expected an integer, got {value!r}")
    if tp in (str, bool) and not isinstance(value, tp):
        raise InvalidEvent(f"{loc}: expected {tp.__name__}, got {value!r}")
    if tp not in (int, str, bool):
        raise InvalidEvent(f"{loc}: no rule for type {tp!r}")
    return value


def _facet_class(base: type, name: str, loc: str) -> type:
    found = FACETS[base].get(name)
    if found is None:
        raise InvalidEvent(f"{loc}: unknown {base.__name__} {name!r}")
    return found


def _check_uuid(value: str, loc: str) -> None:
    try:
        canonical = str(uuid.UUID(value))
    except ValueError as exc:
        raise InvalidEvent(f"{loc}: {value!r} is not a UUID") from exc
    if canonical != value:
        raise InvalidEvent(f"{loc}: {value!r} is not in the canonical form {canonical!r}")


def _check_uri(value: str, loc: str) -> None:
    parsed = urlparse(value)
    if not (parsed.scheme and parsed.netloc):
        raise InvalidEvent(f"{loc}: {value!r} is not an absolute URI")


def _check_time(value: str) -> None:
    """RFC 3339 date-time: a date, a time and an offset (the model's own check allows none)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEvent(f"$.eventTime: {value!r} is not a date-time") from exc
    if "T" not in value.upper() or parsed.tzinfo is None:
        raise InvalidEvent(f"$.eventTime: {value!r} needs a time and a time zone")
