"""The gRPC server shell: an asyncio server, its thread pool, TLS, health, reflection.

The server runs on an event loop of its own thread. Work that may block runs on its thread pool
(given to the services as they register, and as ``migration_thread_pool``); health, reflection
and streams that wait (watch) are coroutines on the loop, so they never need a pool thread
however busy it is. Nothing about jobs.
:func:`build_server` returns the bound port, so tests start a real server on port 0.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from spaceone_job.config import SettingError, Settings, flag

# Registers the services on the server; the pool is where their blocking work runs.
Register = Callable[[grpc.aio.Server, futures.Executor], None]
T = TypeVar("T")
# Threads beyond the Job call limit (see api/servicer.py), so that calls over it are refused at
# once instead of queueing, and health and reflection always find a thread.
REFUSING_THREADS = 8
# At most this many blocking parts of background work at once: two change streams' waits, a
# database ping, a sweep round, a JWKS read.
BACKGROUND_THREADS = 5
# Reflection v1 has v1alpha's messages under a new service name; newer tools ask v1 first.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
# A health name for liveness probes: SERVING while the process serves, whatever the database
# does (readiness probes use "" or a service name, NOT_SERVING while the database is down).
LIVENESS = "spaceone-job.liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Served:
    """A bound server, its port, its health service and the event loop it runs on; and the
    server of the health port, when there is one."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    services: tuple[str, ...]
    loop: asyncio.AbstractEventLoop
    pool: futures.ThreadPoolExecutor
    # The loop's default executor: the blocking parts of background work (background.py).
    background: futures.ThreadPoolExecutor
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    # Set once the ports are closed, and once the loop is let go (nothing may wait on it then).
    stopped: bool = False
    released: bool = False
    # What health answers for the server ("") now.
    serving: bool = True

    @property
    def servers(self) -> tuple[grpc.aio.Server, ...]:
        """The main server, and the health port's."""
        return (self.server,) if self.health_server is None else (self.server, self.health_server)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the server's loop and wait for it (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    async def begin(self) -> None:
        """Start serving on the bound ports, every service SERVING."""
        for grpc_server in self.servers:
            await grpc_server.start()
        await self.report(True)
        await self.health.set(LIVENESS, SERVING)

    async def report(self, serving: bool) -> None:
        """Report every service (and the server, ``""``) as SERVING or NOT_SERVING; nothing
        once stopped."""
        if self.stopped:
            return
        status = SERVING if serving else NOT_SERVING
        self.serving = serving
        for name in ("", *self.services):
            await self.health.set(name, status)

    async def end(self, grace_s: float) -> None:
        """NOT_SERVING, then close the ports; calls still running after ``grace_s`` end. Once;
        ending again does nothing."""
        if self.stopped:
            return
        await self.report(False)
        await self.health.set(LIVENESS, NOT_SERVING)
        for grpc_server in self.servers:
            await grpc_server.stop(grace_s)
        self.stopped = True

    def release(self) -> None:
        """Stop the loop and end the pools' threads, once they are idle (call after :meth:`end`,
        from any thread but the loop's)."""
        if self.released:
            return
        self.released = True
        # A call cut off by the stop may still be running on the pool, and its answer goes
        # through the loop: stopping the loop first would leave that thread waiting forever
        # (and the process unable to exit). The loop stops once the pool is empty.
        threading.Thread(target=self._close, name="grpc-loop-close", daemon=True).start()

    def _close(self) -> None:
        self.pool.shutdown(wait=True)
        self.background.shutdown(wait=True)  # each of its waits is bounded
        self.loop.call_soon_threadsafe(self.loop.stop)


class StartError(RuntimeError):
    """The server cannot start as configured (the message says why, in one line)."""


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingError(f"{flag(name)}: cannot read {path}: {exc.strerror}") from exc


def _public(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTP port's TLS, from the same files as the gRPC port's (None for plaintext; the
    files are checked by :func:`credentials` first)."""
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.tls_client_ca)
    return context


def credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials (None for plaintext), each file checked first, so that a mistake is
    named as such (grpc would only fail to bind the port)."""
    if not settings.tls_cert:
        return None
    cert_pem, key_pem = _read("tls_cert", settings.tls_cert), _read("tls_key", settings.tls_key)
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise SettingError(
            f"{flag('tls_cert')}: {settings.tls_cert} is not a PEM certificate"
        ) from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SettingError(
            f"{flag('tls_key')}: {settings.tls_key} is not an unencrypted PEM private key"
        ) from exc
    if _public(certificate.public_key()) != _public(key.public_key()):
        raise SettingError(
            f"{flag('tls_key')} is not the key of {flag('tls_cert')} (swapped or mismatched files?)"
        )
    ca = _read("tls_client_ca", settings.tls_client_ca) if settings.tls_client_ca else None
    if ca is not None:
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError as exc:
            raise SettingError(
                f"{flag('tls_client_ca')}: {settings.tls_client_ca} holds no PEM certificate"
            ) from exc
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca, require_client_auth=ca is not None
    )


def _enable_reflection(names: Sequence[str], server: grpc.aio.Server) -> None:
    servicer = reflection.aio.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),)
    )


def _claimable(host: str, port: int) -> None:
    """Refuse a port that is taken, in one line, before grpc tries it (and logs its own)."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise StartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def _started_pool(size: int) -> futures.ThreadPoolExecutor:
    """A pool of ``size`` threads, all of them running already.

    A pool starts a thread when a call finds none idle, on the thread that submits it: the event
    loop. Starting one waits until the new thread first runs Python, which, while a query
    computes, is a switch interval later: the loop, which takes in every call, stood still that
    long for each of a burst's first calls (the last of 64 queries began some 50 ms later).
    """
    pool = futures.ThreadPoolExecutor(size, thread_name_prefix="rpc")
    # Each task holds its thread until all have one, so that every submit starts a new thread.
    everyone = threading.Barrier(size)
    for started in [pool.submit(everyone.wait) for _ in range(size)]:
        started.result()
    return pool


def build_server(
    settings: Settings,
    services: Sequence[str],
    register: Register,
    tls: grpc.ServerCredentials | None = None,
    waiting_threads: int = 0,
) -> Served:
    """A server for ``services`` (registered by ``register``) with health and reflection, bound
    to its port (:class:`StartError` when it cannot be) but not started yet. The pool holds a
    thread for each call the limit lets in, ``waiting_threads`` for calls that wait before they
    take their place (on identity), and a few to refuse the rest at once."""
    _claimable(settings.host, settings.port)
    loop = asyncio.new_event_loop()
    background = futures.ThreadPoolExecutor(BACKGROUND_THREADS, thread_name_prefix="background")
    loop.set_default_executor(background)
    threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True).start()

    pool = _started_pool(settings.max_concurrent_rpcs + waiting_threads + REFUSING_THREADS)

    async def bound() -> Served:
        # No grpc-level call limit: grpc would refuse health and reflection too, without an
        # ERROR_* code. Job calls over the limit are refused by the servicers' gate, at once.
        server = grpc.aio.server(migration_thread_pool=pool, options=connection_options(settings))
        register(server, pool)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        _enable_reflection((*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        port = _listen(server, settings.port, tls, settings)
        served = Served(server, port, health_servicer, tuple(services), loop, pool, background)
        if settings.health_port >= 0:
            # Health alone, in plaintext, for probes: it answers whatever fills the main port.
            served.health_server = grpc.aio.server(options=connection_options(settings))
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, served.health_server)
            served.health_port = _listen(served.health_server, settings.health_port, None, settings)
        return served

    try:
        return asyncio.run_coroutine_threadsafe(bound(), loop).result()
    except StartError:
        loop.call_soon_threadsafe(loop.stop)
        raise


def _listen(
    server: grpc.aio.Server, port: int, tls: grpc.ServerCredentials | None, settings: Settings
) -> int:
    """Bind ``server`` to ``port`` on the host; the bound port (:class:`StartError` if not)."""
    address = f"{settings.host}:{port}"
    try:
        bound = (
            server.add_insecure_port(address)
            if tls is None
            else server.add_secure_port(address, tls)
        )
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise StartError(
            f"cannot listen on {address}: the port is in use, or the address is not this host's"
        )
    return int(bound)


# Keep-alive: the server pings a connection quiet for this long and closes it when no answer
# comes (a peer that went away); a client may ping at most this often without calls.
KEEPALIVE_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000
CLIENT_PING_MIN_MS = 10_000


def connection_options(settings: Settings) -> list[tuple[str, Any]]:
    """What one connection may hold and how long it may stay without doing anything."""
    return [
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        # A second server on a port in use must fail, not share the port and the calls.
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.server_handshake_timeout_ms", int(settings.handshake_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", int(settings.idle_connection_s * 1000)),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", CLIENT_PING_MIN_MS),
        ("grpc.http2.max_ping_strikes", 2),
    ]


def raise_open_files_limit() -> tuple[int, int]:
    """The process's soft limit of open files raised to its hard one (each connection takes a
    descriptor); the soft limit before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft, soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard
