"""spaceone-api's descriptors, read from its wheel without installing it, as a descriptor set
for ``buf breaking`` (make lint:
``python -m tests.support.upstream_descriptors WHEEL OURS OUT``), and
for the wire tests.
"""

from __future__ import annotations

import ast
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import descriptor_pb2

# The generated modules of spaceone-api that hold the files under comparison.
PATHS = (
    "spaceone/api/cost_analysis/v1/job_pb2.py",
    "spaceone/api/core/v2/query_pb2.py",
    "spaceone/api/cost_analysis/v1/job_task_pb2.py",
)


def serialized_descriptor(source: str) -> bytes:
    """The FileDescriptorProto bytes a generated ``*_pb2.py`` registers (read, not imported)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            value = node.args[0]
            assert isinstance(value, ast.Constant) and isinstance(value.value, bytes)
            return value.value
    raise AssertionError("no serialized descriptor in module")


def _json_name(name: str) -> str:
    """protoc's JSON name of a field: underscores dropped, the letter after each upper-cased."""
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def with_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    # Descriptors embedded in Python modules leave json_name out; protoc's descriptor sets
    # (ours) fill it in. Filled the same way, the two compare as compiled alike.
    for message in messages:
        for f in message.field:
            f.json_name = f.json_name or _json_name(f.name)
        with_json_names(message.nested_type)


def upstream_file_set(wheel: Path, ours: Path) -> bytes:
    """spaceone-api's descriptors as a FileDescriptorSet, dependencies first; google's files are
    taken from ours, so that only the files under comparison can differ."""
    theirs: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    with zipfile.ZipFile(wheel) as archive:
        for path in PATHS:
            serialized = serialized_descriptor(archive.read(path).decode())
            proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
            with_json_names(proto.message_type)
            theirs[proto.name] = proto
    shared = {
        f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(ours.read_bytes()).file
    }
    ordered: list[descriptor_pb2.FileDescriptorProto] = []

    def add(name: str) -> None:
        if any(p.name == name for p in ordered):
            return
        proto = theirs.get(name) or shared[name]
        for dependency in proto.dependency:
            add(dependency)
        ordered.append(proto)

    for name in sorted(theirs):
        add(name)
    return descriptor_pb2.FileDescriptorSet(file=ordered).SerializeToString()


if __name__ == "__main__":
    wheel, ours, out = map(Path, sys.argv[1:])
    out.write_bytes(upstream_file_set(wheel, ours))
