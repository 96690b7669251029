"""The gRPC server shell: thread pool, limits, TLS, health, reflection. Nothing about jobs.

:func:`build_server` returns the bound port, so tests start a real server on port 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from spaceone_job.config import Settings

Register = Callable[[grpc.Server], None]
# Threads beyond the Job call limit (see api/servicer.py), so that calls over it are refused at
# once instead of queueing, and health and reflection always find a thread.
REFUSING_THREADS = 8
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Served:
    """A started server, its port and its health service."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    services: tuple[str, ...]

    def set_serving(self, serving: bool) -> None:
        """Report every service (and the server, ``""``) as SERVING or NOT_SERVING."""
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.services):
            self.health.set(name, status)

    def stop(self, grace_s: float) -> None:
        """NOT_SERVING first, refuse new calls, let in-flight calls finish for ``grace_s``."""
        self.set_serving(False)
        self.server.stop(grace_s).wait()


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert:
        return None
    if not settings.tls_key:
        raise SystemExit("--tls-cert needs --tls-key")
    ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def build_server(settings: Settings, services: Sequence[str], register: Register) -> Served:
    """Start a server for ``services`` (registered by ``register``) with health and reflection."""
    threads = settings.max_concurrent_rpcs + REFUSING_THREADS
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
        options=[("grpc.max_receive_message_length", settings.max_receive_message_bytes)],
        # A backstop for calls still waiting for a thread; grpc refuses beyond it.
        maximum_concurrent_rpcs=4 * threads,
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    credentials = _credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise SystemExit(f"cannot listen on {address}")
    server.start()
    served = Served(server, port, health_servicer, tuple(services))
    served.set_serving(True)
    return served
