"""The wire contract: our protos compile to upstream's descriptors, and the stubs are fresh."""

from __future__ import annotations

import ast
import filecmp
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from spaceone.api.core.v2 import query_pb2
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2

REFERENCE_CACHE = ".cache/spaceone-api"
MODULES = {
    "spaceone/api/cost_analysis/v1/job_pb2.py": job_pb2,
    "spaceone/api/core/v2/query_pb2.py": query_pb2,
    "spaceone/api/cost_analysis/v1/job_task_pb2.py": job_task_pb2,
}


@pytest.fixture(scope="session")
def upstream_wheel(repo: Path) -> Path:
    """spaceone-api's wheel, fetched by ``make test`` into .cache/ and never installed: it owns
    the same module paths and descriptor-pool file names as our generated code."""
    wheels = sorted((repo / REFERENCE_CACHE).glob("spaceone_api-2.0.435-*.whl"))
    assert wheels, f"no reference wheel in {REFERENCE_CACHE}: run make test, which fetches it"
    return wheels[0]


def _serialized_descriptor(source: str) -> bytes:
    """The FileDescriptorProto bytes a generated ``*_pb2.py`` registers (read, not imported)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            value = node.args[0]
            assert isinstance(value, ast.Constant) and isinstance(value.value, bytes)
            return value.value
    raise AssertionError("no serialized descriptor in module")


def _comparable(proto: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    proto.ClearField("source_code_info")
    for message in [*proto.message_type]:
        stack = [message]
        while stack:
            current = stack.pop()
            for f in current.field:
                f.ClearField("json_name")
            stack.extend(current.nested_type)
    return proto


@pytest.mark.parametrize("path", sorted(MODULES))
def test_descriptors_equal_upstream_spaceone_api(upstream_wheel: Path, path: str) -> None:
    with zipfile.ZipFile(upstream_wheel) as wheel:
        theirs = descriptor_pb2.FileDescriptorProto.FromString(
            _serialized_descriptor(wheel.read(path).decode())
        )
    ours = descriptor_pb2.FileDescriptorProto()
    MODULES[path].DESCRIPTOR.CopyToProto(ours)
    assert _comparable(ours) == _comparable(theirs)


@pytest.mark.parametrize(
    ("module", "service", "path"),
    [(job_pb2, "Job", "job"), (job_task_pb2, "JobTask", "job-task")],
)
def test_http_options_are_upstreams(module: Any, service: str, path: str) -> None:
    method = module.DESCRIPTOR.services_by_name[service].methods_by_name["stat"]
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    assert (rule.post, rule.body) == (f"/cost-analysis/v1/{path}/stat", "*")


def test_generated_stubs_are_fresh(repo: Path, tmp_path: Path) -> None:
    subprocess.run(
        ["make", "-s", "proto", f"PROTO_OUT={tmp_path}"], cwd=repo, check=True, capture_output=True
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(repo / "generated")
        for p in (repo / "generated").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == committed
    _, mismatch, errors = filecmp.cmpfiles(repo / "generated", tmp_path, fresh, shallow=False)
    assert not mismatch and not errors, f"stale stubs, run make proto: {mismatch or errors}"
