"""`GET /v1/openapi.json`: the HTTP API described as OpenAPI 3.0.

Why written out here rather than generated: the routes return the CLI's `--json`
documents, whose shapes live in `helios.conductor.views`; this file states them for
clients in other languages, and the schemathesis test checks every answer of a live
server against it, so the description cannot drift from what the server does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["document"]

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object"}
_NULL_STR = {"type": "string", "nullable": True}
_PORTS = {"type": "object", "additionalProperties": _INT}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": _STR,
        "problems": {"type": "array", "items": {"type": "object", "required": ["path", "reason"],
                                                "properties": {"path": _STR, "reason": _STR}}}}},
    "JobSummary": {"type": "object", "required": ["name", "kind", "count", "running"],
                   "properties": {"name": _STR, "kind": _STR, "count": _INT, "running": _INT,
                                  "version": _INT, "status": _NULL_STR}},
    "Task": {"type": "object", "required": ["id", "node", "state"], "properties": {
        "id": _STR, "node": _STR, "state": _STR,
        "healthy": {"type": "boolean", "nullable": True},
        "container": _NULL_STR, "ports": _PORTS}},
    "JobStatus": {"type": "object", "required": ["name", "kind", "version", "tasks"],
                  "properties": {"name": _STR, "kind": _STR, "version": _INT,
                                 "status": _NULL_STR,
                                 "tasks": {"type": "array", "items": _ref("Task")},
                                 "rollout": {**_OBJ, "nullable": True},
                                 "pending": {"type": "array", "items": _OBJ}}},
    "JobRunResult": {"type": "object", "required": ["name", "version", "changed"],
                     "properties": {"name": _STR, "version": _INT, "changed": _BOOL}},
    "JobChange": {"type": "object", "required": ["name"], "properties": {
        "name": _STR, "version": _INT, "stopped": _BOOL, "removed": _BOOL,
        "runs": {"type": "array", "items": _STR}}},
    "HistoryEvent": {"type": "object", "required": ["time", "job", "state"], "properties": {
        "time": {"type": "number"}, "job": _STR, "task": _STR, "node": _STR,
        "state": _STR, "reason": _STR}},
    "DispatchRequest": {"type": "object", "additionalProperties": False, "properties": {
        "payload": {"nullable": True}, "idempotency_key": _STR}},
    "DispatchResult": {"type": "object", "required": ["job", "run", "created"],
                       "properties": {"job": _STR, "run": _STR, "created": _BOOL}},
    "Node": {"type": "object", "required": ["name", "status", "address", "cpus", "memory",
                                            "cpus_free", "memory_free", "labels", "tasks"],
             "properties": {"name": _STR, "status": {"type": "string", "enum": ["up", "down"]},
                            "address": _STR, "cpus": {"type": "number"}, "memory": _INT,
                            "cpus_free": {"type": "number"}, "memory_free": _INT,
                            "labels": {"type": "object", "additionalProperties": _STR},
                            "tasks": _INT}},
    "NodeRemoved": {"type": "object", "required": ["name", "removed"], "properties": {
        "name": _STR, "removed": _BOOL, "was_up": _BOOL, "tasks": _INT,
        "kept": {"type": "array", "items": _STR}}},
    "Endpoint": {"type": "object", "required": ["task", "node", "host", "ports"],
                 "properties": {"task": _STR, "node": _STR, "host": _STR, "ports": _PORTS}},
    "Leader": {"type": "object", "required": ["leader"], "properties": {
        "leader": _BOOL, "name": _NULL_STR, "url": _NULL_STR,
        "epoch": {"type": "integer", "nullable": True}}},
    "Event": {"type": "object", "required": ["index", "time", "topic", "type", "job", "task",
                                             "node", "detail"],
              "properties": {"index": _INT, "time": _STR,
                             "topic": {"type": "string",
                                       "enum": ["job", "task", "node", "rollout", "leader"]},
                             "type": _STR, "job": _NULL_STR, "task": _NULL_STR,
                             "node": _NULL_STR, "detail": _STR}},
}

_NAME = {"name": "name", "in": "path", "required": True, "schema": _STR}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {400: "Bad request", 403: "Forbidden (foreign Origin or Host)",
               404: "Not found", 409: "Conflict",
               413: "Too large", 415: "Unsupported media type",
               422: "Invalid (every problem named)", 501: "Not implemented yet",
               502: "A node did not answer", 503: "No leader reachable",
               504: "The conductor did not answer in time"}
    out = {str(c): _json(_ref("Error"), reasons[c]) for c in (*codes, 403, 503, 504)}
    return out


def _op(summary: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": ok, **_errors(*errors)}, **extra}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the API."""
    yaml_job = {"schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/v1/jobs": {
            "get": _op("Jobs with kind, count, running tasks (`helios job ls --json`)",
                       _json(_array("JobSummary"))),
            "post": _op("Create or update a job and deploy it (`helios job run`)",
                        _json(_ref("JobRunResult")), 400, 413, 415, 422,
                        requestBody={"required": True, "content": {
                            "application/json": {"schema": _OBJ},
                            "application/yaml": yaml_job}}),
        },
        "/v1/jobs/{name}": {
            "parameters": [_NAME],
            "get": _op("The job's tasks (`helios job status --json`)",
                       _json(_ref("JobStatus")), 400, 404),
            "delete": _op("Stop and delete the job (`helios job rm`)",
                          _json(_ref("JobChange")), 400, 404),
        },
        "/v1/jobs/{name}/stop": {
            "parameters": [_NAME],
            "post": _op("Stop all its tasks (`helios job stop`)", _json(_ref("JobChange")),
                        400, 404),
        },
        "/v1/jobs/{name}/history": {
            "parameters": [_NAME],
            "get": _op("Task events, newest last (`helios job history --json`)",
                       _json(_array("HistoryEvent")), 400, 404),
        },
        "/v1/jobs/{name}/logs": {
            "parameters": [_NAME,
                           {"name": "task", "in": "query", "schema": _STR},
                           {"name": "tail", "in": "query", "schema": _INT},
                           {"name": "follow", "in": "query", "schema": _BOOL}],
            "get": _op("Container output, as text (`helios job logs`)",
                       {"description": "OK", "content": {"text/plain": {"schema": _STR}}},
                       400, 404, 502),
        },
        "/v1/jobs/{name}/dispatch": {
            "parameters": [_NAME],
            "post": _op("Run a parameterized job once (`helios job dispatch --json`)",
                        _json(_ref("DispatchResult")), 400, 404, 413, 422,
                        requestBody={"required": False, "content": {
                            "application/json": {"schema": _ref("DispatchRequest")}}}),
        },
        "/v1/nodes": {
            "get": _op("Nodes (`helios nodes --json`)", _json(_array("Node"))),
        },
        "/v1/nodes/{name}": {
            "parameters": [_NAME, {"name": "force", "in": "query", "schema": _BOOL}],
            "delete": _op("Forget a machine gone for good (`helios node rm`)",
                          _json(_ref("NodeRemoved")), 400, 404, 409),
        },
        "/v1/nodes/{name}/drain": {
            "parameters": [_NAME],
            "post": _op("Drain a node (`helios node drain`); `{\"enable\": true}` ends it",
                        _json(_OBJ), 400, 404,
                        requestBody={"required": False, "content": {"application/json": {
                            "schema": {"type": "object", "additionalProperties": False,
                                       "properties": {
                                           "deadline": {"oneOf": [{"type": "string"},
                                                            {"type": "number"}]},
                                           "enable": {"type": "boolean"}}}}}}),
        },
        "/v1/endpoints/{name}": {
            "parameters": [_NAME],
            "get": _op("Healthy endpoints of a service (`helios endpoints --json`)",
                       _json(_array("Endpoint")), 400, 404),
        },
        "/v1/leader": {
            "get": _op("Which conductor leads (`helios leader --json`)",
                       _json(_ref("Leader"))),
        },
        "/v1/events": {
            "parameters": [
                {"name": "index", "in": "query", "schema": _INT,
                 "description": "Only events with a greater index (resume after it)."},
                {"name": "job", "in": "query", "schema": _STR},
                {"name": "last", "in": "query", "schema": {"type": "integer", "minimum": 0},
                 "description": "Without index: only the newest this many events."},
                {"name": "follow", "in": "query", "schema": _BOOL,
                 "description": "Keep the stream open and send new events as they come."}],
            "get": _op("The event stream (`helios events --json`): one Event per line",
                       {"description": "Newline-delimited JSON, one Event per line",
                        "content": {"application/x-ndjson": {"schema": _ref("Event")}}},
                       400),
        },
    }
    return {"openapi": "3.0.3",
            "info": {"title": "Helios HTTP API", "version": "1",
                     "description": "The `--json` documents of the `helios` CLI over "
                                    "HTTP. Any conductor answers; a standby forwards to "
                                    "the leader. Once ACLs are on, requests carry an ACL "
                                    "token: `Authorization: Bearer <token>` (401 without "
                                    "one, 403 when it may not)."},
            "paths": paths,
            # optional while ACLs are off (before `helios acl bootstrap`), required after
            "security": [{}, {"bearer": []}],
            "components": {"schemas": _SCHEMAS,
                           "securitySchemes": {"bearer": {"type": "http",
                                                          "scheme": "bearer"}}}}
