"""``GET /openapi.json``: an OpenAPI 3.1 document of the HTTP routes, made from the same
descriptors the routes are (request and response schemas in protobuf's JSON mapping, the protos'
comments as descriptions), the token schemes and the error shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

_F = FieldDescriptor
# Scalars as protobuf's JSON mapping writes and reads them (64-bit integers as strings, read from
# numbers too; bytes as base64).
_SCALARS: dict[int, dict[str, Any]] = {
    **{t: {"type": "integer", "format": "int32"} for t in (_F.TYPE_INT32, _F.TYPE_SINT32)},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    **{t: {"type": "integer", "format": "uint32"} for t in (_F.TYPE_UINT32, _F.TYPE_FIXED32)},
    **{
        t: {"type": ["string", "integer"], "format": "int64"}
        for t in (_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64)
    },
    **{
        t: {"type": ["string", "integer"], "format": "uint64"}
        for t in (_F.TYPE_UINT64, _F.TYPE_FIXED64)
    },
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
# Well-known types with a JSON form of their own.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
}
ERROR = "Error"
_ERROR_SCHEMA = {
    "type": "object",
    "description": "A refused call: the gRPC answer's ERROR_* code and message, and its"
    " parameters beside them.",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "pattern": "^ERROR_[A-Z_]+$"},
                "message": {"type": "string"},
            },
            "additionalProperties": True,
        }
    },
}
_SECURITY = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "token": {"type": "apiKey", "in": "header", "name": "token"},
}
# Field numbers of FileDescriptorProto and DescriptorProto where a location path descends.
_MESSAGES, _ENUMS, _SERVICES = 4, 5, 6
_FIELDS, _NESTED, _NESTED_ENUMS, _METHODS = 2, 3, 4, 2


def comments() -> dict[str, str]:
    """The protos' leading comments by element full name (messages, fields as
    ``Message.field``, enums, services, methods as ``Service.method``), from the descriptor set
    ``make proto`` writes beside the stubs."""
    data = resources.files("spaceone_job.v1").joinpath("sources.binpb").read_bytes()
    found: dict[str, str] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        names = dict(_paths(file))
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name and location.leading_comments.strip():
                found[name] = " ".join(location.leading_comments.split())
    return found


def _paths(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    package = f"{file.package}." if file.package else ""
    for i, kind in enumerate(file.message_type):
        yield from _message_paths(kind, (_MESSAGES, i), package)
    for i, enum in enumerate(file.enum_type):
        yield (_ENUMS, i), package + enum.name
    for i, service in enumerate(file.service):
        yield (_SERVICES, i), package + service.name
        for j, method in enumerate(service.method):
            yield (_SERVICES, i, _METHODS, j), f"{package}{service.name}.{method.name}"


def _message_paths(
    kind: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    name = prefix + kind.name
    yield path, name
    for i, field in enumerate(kind.field):
        yield (*path, _FIELDS, i), f"{name}.{field.name}"
    for i, nested in enumerate(kind.nested_type):
        yield from _message_paths(nested, (*path, _NESTED, i), f"{name}.")
    for i, enum in enumerate(kind.enum_type):
        yield (*path, _NESTED_ENUMS, i), f"{name}.{enum.name}"


class _Schemas:
    """Component schemas of messages and enums, each written once, by full name."""

    def __init__(self, described: dict[str, str]) -> None:
        self.described = described
        self.components: dict[str, dict[str, Any]] = {}

    def ref(self, kind: Descriptor) -> dict[str, Any]:
        """A reference to ``kind``'s schema (written on first use)."""
        if kind.full_name in _WELL_KNOWN:
            return _WELL_KNOWN[kind.full_name]
        if kind.full_name not in self.components:
            self.components[kind.full_name] = {}  # before the fields: a message may nest itself
            self.components[kind.full_name] = self._message(kind)
        return {"$ref": f"#/components/schemas/{kind.full_name}"}

    def _message(self, kind: Descriptor) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: self._field(f) for f in kind.fields},
            "additionalProperties": False,
        }
        return self._described(schema, kind.full_name)

    def _field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self._one(value)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self._one(field)}
        else:
            schema = dict(self._one(field))
        return self._described(schema, field.full_name)

    def _one(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return self._enum(field.enum_type)
        return _SCALARS[field.type]

    def _enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        if enum.full_name not in self.components:
            names = [value.name for value in enum.values]
            schema = self._described({"type": "string", "enum": names}, enum.full_name)
            self.components[enum.full_name] = schema
        return {"$ref": f"#/components/schemas/{enum.full_name}"}

    def _described(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        if name in self.described:
            # A $ref with siblings is allowed in 3.1; the description is the field's own.
            schema["description"] = self.described[name]
        return schema


def document(
    operations: Iterable[tuple[str, Sequence[str], Descriptor, Descriptor, bool]],
    probes: Iterable[str],
    version: str,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document: for each operation (its method's full name, its paths, request
    and response messages, and whether it streams) a POST at each path; ``probes`` as GETs."""
    described = comments()
    schemas = _Schemas(described)
    paths: dict[str, Any] = {}
    for method, served_at, request, response, streams in operations:
        media = "application/x-ndjson" if streams else "application/json"
        answer = {
            "description": "One event a JSON line, until the stream ends." if streams else "OK",
            "content": {media: {"schema": schemas.ref(response)}},
        }
        for i, path in enumerate(served_at):
            paths[path] = {
                "post": {
                    "operationId": method if i == 0 else f"{method}.console",
                    "summary": described.get(method, method),
                    "tags": [method.rsplit(".", 1)[0]],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": schemas.ref(request)}},
                    },
                    "responses": {"200": answer, "default": _refused()},
                }
            }
    for path in probes:
        paths[path] = {"get": {"responses": {"200": {"description": "OK"}}, "security": []}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "spaceone-job",
            "version": version,
            "description": "The SpaceONE / Cloudforet cost-analysis Job and JobTask API, and"
            " spaceone-job's producer and watch extensions, as JSON over HTTP.",
        },
        "paths": paths,
        "components": {
            "schemas": {**schemas.components, ERROR: _ERROR_SCHEMA},
            "securitySchemes": _SECURITY,
        },
        "security": [{name: []} for name in _SECURITY],
    }


def _refused() -> dict[str, Any]:
    return {
        "description": "Refused: the HTTP status of the gRPC status (429 with Retry-After).",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
    }
