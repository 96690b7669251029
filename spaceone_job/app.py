"""Puts the pieces together: store, seed, keys, service, servicer, server, background work.

:class:`App` is what ``spaceone-job serve`` runs and what the tests start on an ephemeral port:
:meth:`App.bind` claims the port (and starts the server's loop); then ``async with app:`` on
that loop serves, and drains at its end (:meth:`App.shutdown`); :meth:`App.release` lets the
loop go. :meth:`App.start` and :meth:`App.stop` do the same from another thread.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.internal import api_implementation
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2

from spaceone_job import auth, observe, seed, server
from spaceone_job.api import http
from spaceone_job.api.servicer import (
    Gate,
    HistoryServicer,
    JobServicer,
    JobTaskServicer,
    OnLoop,
    ProducerServicer,
    Servicer,
    add_service,
)
from spaceone_job.api.watch import WatchServicer
from spaceone_job.background import Background, ChangeFeed, HealthMonitor, every
from spaceone_job.changes import ChangeHub
from spaceone_job.config import SettingError, Settings, flag
from spaceone_job.identity import MAX_WAITING, Identity, channel_to
from spaceone_job.kinds import TASK
from spaceone_job.lifecycle import Lifecycle, Sweeper, retention
from spaceone_job.lifecycle.retention import Retention
from spaceone_job.producer import Bounds, Producers
from spaceone_job.query.filters import Limits
from spaceone_job.server import Served, StartError
from spaceone_job.service import Clock, JobService, ReadService, Trails, utcnow
from spaceone_job.store.connect import connect
from spaceone_job.store.protocol import Store
from spaceone_job.v1 import producer_pb2

LOG = logging.getLogger(__name__)
SERVICES: dict[str, ServiceDescriptor] = {
    service.full_name: service
    for service in (
        job_pb2.DESCRIPTOR.services_by_name["Job"],
        job_task_pb2.DESCRIPTOR.services_by_name["JobTask"],
        producer_pb2.DESCRIPTOR.services_by_name["Producer"],
        producer_pb2.DESCRIPTOR.services_by_name["Watch"],
        producer_pb2.DESCRIPTOR.services_by_name["History"],
    )
}
JOB_SERVICE, JOB_TASK_SERVICE, PRODUCER_SERVICE, WATCH_SERVICE, HISTORY_SERVICE = SERVICES


def limits_of(settings: Settings) -> Limits:
    """The query bounds a server enforces."""
    return Limits(
        max_page_limit=settings.max_page_limit,
        max_in_list=settings.max_in_list,
        max_regex_length=settings.max_regex_length,
        max_stat_stages=settings.max_stat_stages,
    )


def bounds_of(settings: Settings) -> Bounds:
    """What one producer's request may store."""
    return Bounds(
        tasks_per_job=settings.max_tasks_per_job,
        values_bytes=settings.max_values_bytes,
        error_message_bytes=settings.max_error_message_bytes,
    )


@dataclass
class Keys:
    """Where tokens are verified from, and (development only) the key that signs them."""

    authenticator: auth.Authenticator
    dev_private_key: Path | None


def system_token(settings: Settings) -> str:
    """The service's own SYSTEM_TOKEN: the setting, or the file it names with ``@``."""
    value = settings.system_token.strip()
    if not value.startswith("@"):
        return value
    try:
        return Path(value[1:]).read_text().strip()
    except OSError as exc:
        raise SettingError(
            f"{flag('system_token')}: cannot read {value[1:]}: {exc.strerror}"
        ) from exc


def load_keys(settings: Settings) -> Keys:
    """Identity's keys per domain, the JWKS file, or else the development key pair in the
    state folder."""
    if settings.identity_endpoint:
        identity = Identity(
            channel_to(settings.identity_endpoint),
            system_token(settings),
            settings.identity_key_ttl_s,
        )
        return Keys(auth.Authenticator(auth.DomainKeys(identity), identity=identity), None)
    if settings.jwks:
        try:
            return Keys(auth.Authenticator.from_jwks_file(Path(settings.jwks)), None)
        except auth.KeysError as exc:
            raise SettingError(f"{flag('jwks')}: {exc}") from exc
    dev = auth.dev_keys(settings.state_path)
    authenticator = auth.Authenticator.from_jwks_file(dev.jwks)
    authenticator.hint = (
        f"development keys are in {settings.state_path}; mint a token with"
        f" `spaceone-job token --state-dir {settings.state_path} --domain-id D`"
    )
    return Keys(authenticator, dev.private_key)


class App:
    """One running spaceone-job server."""

    def __init__(self, settings: Settings, store: Store | None = None, clock: Clock = utcnow):
        self.settings = settings
        # What a setting can get wrong is found first, before anything is connected or logged.
        self.keys = load_keys(settings)
        self.tls = server.credentials(settings)
        self.store = store or connect(
            settings.mongodb_uri,
            settings.database,
            db_timeout_ms=settings.db_timeout_ms,
            query_timeout_ms=settings.query_timeout_ms,
        )
        self.tasks = self.store.sibling(TASK)
        self.clock = clock
        self.lifecycle = Lifecycle(self.store, self.tasks, clock, settings.max_reports_per_task)
        limits, timeout_ms = limits_of(settings), settings.query_timeout_ms
        self.service = JobService(
            self.store, limits, timeout_ms, clock, on_cancel=self.lifecycle.cancel_tasks
        )
        self.task_service = ReadService(self.tasks, limits, timeout_ms, clock)
        # One gate for every Job and JobTask call: one call limit, one drain.
        self.gate = Gate(settings.max_concurrent_rpcs)
        # Watchers are woken by this process's writes to jobs and to their tasks, and by other
        # replicas' through the change streams (re-reads on a timer without them, on MongoDB).
        self.hub = ChangeHub(
            self._watched,
            polling=not self.store.in_memory,
            max_watchers=settings.max_watchers,
            max_per_token=settings.max_watchers_per_token,
        )
        self.store.listeners.append(self.hub.job_changed)
        self.tasks.listeners.append(self.hub.notify)
        authenticator = self.keys.authenticator
        # The unary services, by name: served over gRPC, and over HTTP when it is on.
        self.servicers: dict[str, Servicer] = {
            JOB_SERVICE: JobServicer(self.service, authenticator, self.gate),
            JOB_TASK_SERVICE: JobTaskServicer(self.task_service, authenticator, self.gate),
            PRODUCER_SERVICE: ProducerServicer(
                Producers(self.lifecycle, bounds_of(settings)), authenticator, self.gate
            ),
            HISTORY_SERVICE: HistoryServicer(
                Trails(self.service, self.tasks), authenticator, self.gate
            ),
        }
        self.watch = WatchServicer(
            self.service, authenticator, self.hub, settings.watch_keepalive_s, self.gate
        )
        self.seeded = (0, 0)
        self.retention = Retention(settings.retain_finished_days, settings.keep_finished_per_source)
        self.sweeper = Sweeper(
            self.lifecycle.jobs, settings.timeout_s, settings.sweep_interval_s, self.retention
        )
        self.served: Served | None = None
        self.monitor: HealthMonitor | None = None
        self.metrics: WSGIServer | None = None
        self.http: http.HttpServer | None = None
        self.background = Background()
        self._watched_fields = self.service.fields_and(("events",))

    def _watched(self, job_id: str) -> dict[str, Any] | None:
        """A watched job with its own events, read again for its watchers (their scope was
        checked as they came)."""
        return self.store.find_one(
            {"job_id": job_id}, self._watched_fields, self.settings.query_timeout_ms / 1000
        )

    def prepare_store(self) -> tuple[int, int]:
        """Create indexes and load the seed file; how many jobs and tasks were seeded."""
        if not self.settings.create_indexes:
            LOG.info("index creation off (--create-indexes false)")
        elif self.store.ping(self.settings.db_timeout_ms / 1000):
            for store in (self.store, self.tasks):
                created = store.ensure_indexes()
                if created:
                    LOG.info("%s indexes created: %s", store.key, ", ".join(created))
            retention.expire(self.store, self.retention)
        else:
            LOG.warning("database unreachable at start; indexes will not be created now")
        if self.settings.seed:
            self.seeded = seed.load(self.store, self.tasks, Path(self.settings.seed), self.clock())
        return self.seeded

    def bind(self) -> int:
        """Claim the port (:class:`StartError` when it is taken); the bound port."""

        def register(grpc_server: grpc.aio.Server, pool: Executor) -> None:
            for name, servicer in self.servicers.items():
                add_service(grpc_server, SERVICES[name], OnLoop(servicer, pool))
            add_service(grpc_server, SERVICES[WATCH_SERVICE], self.watch)

        services = list(SERVICES)
        waiting = MAX_WAITING if self.settings.identity_endpoint else 0
        self.served = server.build_server(self.settings, services, register, self.tls, waiting)
        self.hub.bind(self.served.loop, self.served.pool)
        return self.served.port

    @property
    def bound(self) -> Served:
        """The bound server (:meth:`bind` first)."""
        if self.served is None:
            raise RuntimeError("bind() first: the server's loop comes with its port")
        return self.served

    async def __aenter__(self) -> App:
        """Serve on the bound port (on the server's loop); a start that fails part-way
        (:class:`StartError`: the HTTP port is taken) leaves nothing half-started."""
        try:
            await self._begin(self.bound)
        except StartError:
            await self.shutdown(0)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """:meth:`shutdown`."""
        await self.shutdown()

    async def _begin(self, served: Served) -> None:
        await served.begin()
        self.monitor = HealthMonitor(
            self.store,
            served,
            self.settings.health_interval_s,
            self.settings.db_timeout_ms / 1000,
        )
        self._start_background(self.monitor)
        if self.settings.timeout_s == 0:
            LOG.info("jobs never time out (--timeout-s 0)")
        if api_implementation.Type() != "upb":
            LOG.warning(
                "protobuf runs on its %s backend; upb is several times faster",
                api_implementation.Type(),
            )
        if served.health_port is not None:
            LOG.info("health alone on %s:%d", self.settings.host, served.health_port)
        if self.settings.http_port >= 0:
            self.http = await self._serve_http(served)
        if self.settings.metrics_port >= 0:
            host = self.settings.metrics_host or self.settings.host
            self.metrics = observe.serve_metrics(host, self.settings.metrics_port)
            LOG.info("Prometheus metrics on http://%s:%d/metrics", *self.metrics.server_address[:2])
        LOG.info(
            "spaceone-job %s listening on %s:%d (%s); store: %s, %d job(s) and %d task(s) seeded;"
            " protobuf backend: %s; auth: %s",
            version(),
            self.settings.host,
            served.port,
            transport_of(self.settings),
            self.store.description,
            *self.seeded,
            api_implementation.Type(),
            self._auth_source(),
        )

    def start(self) -> int:
        """Serve, from a thread that is not the server's loop (binding first if :meth:`bind`
        was not called); the bound port. :meth:`stop` ends it."""
        if self.served is None:
            self.bind()
        served = self.bound
        try:
            served.run(self.__aenter__())
        except StartError:
            self.release()
            raise
        return served.port

    def _start_background(self, monitor: HealthMonitor) -> None:
        """The background tasks (call on the server's loop)."""
        start = self.background.start
        start("health-monitor", monitor.run())
        source = self.keys.authenticator.source
        if isinstance(source, auth.JwksKeys) and self.settings.jwks and self.settings.jwks_reload_s:
            start("jwks-reloader", every(self.settings.jwks_reload_s, source.reload))
        if not self.store.in_memory:  # else this process's writes are all the writes
            start("changes-job", ChangeFeed(self.store, self.hub, journaled=True).run())
            start("changes-job_task", ChangeFeed(self.tasks, self.hub, journaled=False).run())
        if self.sweeper.needed:
            start("sweeper", every(self.settings.sweep_interval_s, self.sweeper.round))

    async def _serve_http(self, served: Served) -> http.HttpServer:
        """JSON over HTTP (api/http.py) on the server's loop, through the same call body."""
        served_ = [(SERVICES[name], s) for name, s in self.servicers.items()]
        routes = http.routes([*served_, (SERVICES[WATCH_SERVICE], self.watch)])
        app = http.application(
            routes,
            served.pool,
            self.settings.max_receive_message_bytes,
            lambda: served.serving,
            version(),
        )
        tls = server.ssl_context(self.settings)
        limits = http.Limits(
            self.settings.max_connections,
            self.settings.handshake_timeout_s,
            self.settings.idle_connection_s,
        )
        try:
            port = self.settings.http_port
            serving = await http.serve(app, self.settings.host, port, tls, limits)
        except OSError as exc:
            raise StartError(
                f"{flag('http_port')}: {self.settings.host}:{self.settings.http_port}"
                f" is in use or cannot be bound ({exc.strerror})"
            ) from exc
        scheme = "https" if tls else "http"
        LOG.info(
            "JSON over HTTP on %s://%s:%d (%d routes)",
            scheme,
            self.settings.host,
            serving.port,
            sum(len(r.paths) for r in routes),
        )
        return serving

    @property
    def http_port(self) -> int | None:
        """The HTTP port's bound port, when it is on."""
        return None if self.http is None else self.http.port

    def _auth_source(self) -> str:
        if self.settings.identity_endpoint:
            return f"each domain's key from identity at {self.settings.identity_endpoint}"
        if self.settings.jwks:
            return f"JWKS {self.settings.jwks}"
        return f"development keys in {self.settings.state_path}"

    def reload_keys(self) -> None:
        """Read the JWKS file again (SIGHUP); other key sources need no reload."""
        source = self.keys.authenticator.source
        if isinstance(source, auth.JwksKeys):
            source.reload()

    @property
    def health_port(self) -> int | None:
        """The health port (probes), once bound, when there is one."""
        return None if self.served is None else self.served.health_port

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics are served on, once started."""
        return None if self.metrics is None else int(self.metrics.server_address[1])

    async def shutdown(self, grace_s: float | None = None) -> None:
        """Drain and stop serving (on the server's loop); once, a second time does nothing.

        The gate closes first, then health turns NOT_SERVING while the port stays open, so
        probes read it and no call sent after a NOT_SERVING answer is served: Job calls that
        arrive are refused UNAVAILABLE ``ERROR_SERVER_STOPPING`` (retryable); those in flight
        have ``grace_s`` to finish; then the ports close.
        """
        grace = self.settings.grace_s if grace_s is None else grace_s
        self.gate.close()
        served = self.bound
        if served.stopped:
            return
        await self.background.stop()
        await served.report(False)
        self.hub.close()  # watchers end UNAVAILABLE: their clients watch another replica
        if not await asyncio.to_thread(self.gate.drain, grace):
            LOG.warning("calls still running after %.1f s are cancelled", grace)
        if self.http is not None:
            await self.http.stop()
        await served.end(0)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.shutdown)
            self.metrics.server_close()

    def release(self) -> None:
        """Let the server's loop and pools go, once :meth:`shutdown` has run (from any thread
        but the loop's)."""
        if self.served is not None:
            self.served.release()

    def stop(self, grace_s: float | None = None) -> None:
        """:meth:`shutdown` then :meth:`release`, from a thread that is not the server's loop."""
        if self.served is not None and not self.served.released:
            self.served.run(self.shutdown(grace_s))
            self.release()


def transport_of(settings: Settings) -> str:
    """plaintext, TLS or mTLS, as the settings make it."""
    if not settings.tls_cert:
        return "plaintext"
    return "mTLS" if settings.tls_client_ca else "TLS"


def version() -> str:
    """The installed package version."""
    try:
        return package_version("spaceone-job")
    except PackageNotFoundError:
        return "unknown"
