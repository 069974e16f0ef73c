"""The parts of the OpenLineage 2-0-2 RunEvent schema these tests check, as JSON Schema.

Neither openlineage-python nor openlineage-integration-common ships the spec's
OpenLineage.json in its wheel, and the tests cannot fetch it, so the required structure is
restated here: event type, times, URIs, UUID run ids, jobs, datasets, and the rule that every
facet carries `_producer` and `_schemaURL`. The facet schema URLs are checked against
openlineage-python's generated classes in the tests.
"""

from __future__ import annotations

from typing import Any

FACET: dict[str, Any] = {
    "type": "object",
    "required": ["_producer", "_schemaURL"],
    "properties": {
        "_producer": {"type": "string", "format": "uri"},
        "_schemaURL": {"type": "string", "format": "uri"},
    },
}
FACETS: dict[str, Any] = {"type": "object", "additionalProperties": {"$ref": "#/$defs/Facet"}}
DATASET: dict[str, Any] = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": {"type": "string"},
        "name": {"type": "string"},
        "facets": FACETS,
        "inputFacets": FACETS,
        "outputFacets": FACETS,
    },
}
RUN_EVENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "Facet": FACET,
        "ParentRunFacet": {
            "allOf": [
                FACET,
                {
                    "type": "object",
                    "required": ["run", "job"],
                    "properties": {
                        "run": {
                            "type": "object",
                            "required": ["runId"],
                            "properties": {"runId": {"type": "string", "format": "uuid"}},
                        },
                        "job": {"type": "object", "required": ["namespace", "name"]},
                    },
                },
            ]
        },
        "SourceCodeLocationJobFacet": {
            "allOf": [FACET, {"type": "object", "required": ["type", "url"]}]
        },
        "DatasetVersionDatasetFacet": {
            "allOf": [FACET, {"type": "object", "required": ["datasetVersion"]}]
        },
    },
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "format": "uri"},
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {
                "runId": {"type": "string", "format": "uuid"},
                "facets": {
                    "type": "object",
                    "properties": {"parent": {"$ref": "#/$defs/ParentRunFacet"}},
                    "additionalProperties": {"$ref": "#/$defs/Facet"},
                },
            },
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {
                "namespace": {"type": "string"},
                "name": {"type": "string"},
                "facets": {
                    "type": "object",
                    "properties": {
                        "sourceCodeLocation": {"$ref": "#/$defs/SourceCodeLocationJobFacet"}
                    },
                    "additionalProperties": {"$ref": "#/$defs/Facet"},
                },
            },
        },
        "inputs": {"type": "array", "items": DATASET},
        "outputs": {"type": "array", "items": DATASET},
    },
}
