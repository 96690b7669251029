"""The wire contract: our protos compile to upstream's descriptors, and the stubs are fresh."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from spaceone.api.core.v2 import handler_pb2, query_pb2
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2
from spaceone.api.identity.v2 import app_pb2, domain_pb2

from .support.upstream_descriptors import PATHS, serialized_descriptor, upstream_file_set

REFERENCE_CACHE = ".cache/spaceone-api"
MODULES = dict(zip(PATHS, (job_pb2, query_pb2, job_task_pb2), strict=True))


@pytest.fixture(scope="session")
def upstream_wheel(repo: Path) -> Path:
    """spaceone-api's wheel, fetched by ``make test`` into .cache/ and never installed: it owns
    the same module paths and descriptor-pool file names as our generated code."""
    wheels = sorted((repo / REFERENCE_CACHE).glob("spaceone_api-2.0.435-*.whl"))
    assert wheels, f"no reference wheel in {REFERENCE_CACHE}: run make test, which fetches it"
    return wheels[0]


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
            serialized_descriptor(wheel.read(path).decode())
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


def test_buf_builds_lints_and_finds_nothing_breaking_against_upstream_offline(
    repo: Path, tmp_path: Path, upstream_wheel: Path
) -> None:
    ours, theirs = tmp_path / "ours.binpb", tmp_path / "theirs.binpb"
    subprocess.run(
        ["make", "-s", "protoset", f"PROTOSET={ours}"], cwd=repo, check=True, capture_output=True
    )
    theirs.write_bytes(upstream_file_set(upstream_wheel, ours))
    buf = str(Path(sys.executable).parent / "buf")
    # No network: buf may reach no registry (googleapis comes from make install's copy).
    offline = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "BUF_CACHE_DIR": str(tmp_path)}
    built = tmp_path / "built.binpb"
    for args in (
        ["build", ".", "-o", str(built)],
        ["lint", "."],
        # One image of both modules (proto/ and googleapis'), against spaceone-api's.
        ["breaking", str(built), "--against", f"{theirs}#format=binpb", "--config", "buf.yaml"],
    ):
        done = subprocess.run([buf, *args], capture_output=True, text=True, cwd=repo, env=offline)
        assert done.returncode == 0, f"buf {args[0]}: {done.stdout}{done.stderr}"


# Only what the service uses of identity's protos: each message and method as upstream has it.
PARTIAL = {
    "spaceone/api/core/v2/handler_pb2.py": (
        handler_pb2,
        ["AuthenticationRequest", "AuthenticationResponse"],
        {},
    ),
    "spaceone/api/identity/v2/domain_pb2.py": (domain_pb2, [], {"Domain": ["get_public_key"]}),
    "spaceone/api/identity/v2/app_pb2.py": (
        app_pb2,
        ["AppCheckRequest", "CheckAppInfo"],
        {"App": ["check"]},
    ),
}


@pytest.mark.parametrize("path", list(PARTIAL))
def test_identity_messages_and_methods_are_upstreams(upstream_wheel: Path, path: str) -> None:
    module, messages, services = PARTIAL[path]
    with zipfile.ZipFile(upstream_wheel) as archive:
        theirs = descriptor_pb2.FileDescriptorProto.FromString(
            serialized_descriptor(archive.read(path).decode())
        )
    ours = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(ours)
    assert (ours.name, ours.package) == (theirs.name, theirs.package)
    assert ours.options.go_package == theirs.options.go_package
    by_name = {m.name: m for m in theirs.message_type}
    for name in messages:
        (mine,) = [m for m in ours.message_type if m.name == name]
        for field in mine.field:
            field.ClearField("json_name")
        assert mine == by_name[name]
    for service, methods in services.items():
        (upstream_service,) = [s for s in theirs.service if s.name == service]
        (our_service,) = [s for s in ours.service if s.name == service]
        for method in methods:
            (mine_method,) = [m for m in our_service.method if m.name == method]
            (their_method,) = [m for m in upstream_service.method if m.name == method]
            assert (mine_method.input_type, mine_method.output_type) == (
                their_method.input_type,
                their_method.output_type,
            )
