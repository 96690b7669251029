"""Puts the pieces together: store, seed, keys, service, servicer, server, sweeper.

:class:`App` is what ``spaceone-job serve`` runs and what the tests start on an ephemeral port.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import grpc
from google.protobuf.internal import api_implementation
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc

from spaceone_job import auth, seed
from spaceone_job.api.servicer import JobServicer
from spaceone_job.config import Settings
from spaceone_job.lifecycle import Lifecycle, Sweeper
from spaceone_job.query.filters import Limits
from spaceone_job.server import Served, build_server
from spaceone_job.service import Clock, JobService, utcnow
from spaceone_job.store.store import JobStore, connect

LOG = logging.getLogger(__name__)
JOB_SERVICE: str = job_pb2.DESCRIPTOR.services_by_name["Job"].full_name


def limits_of(settings: Settings) -> Limits:
    """The query bounds a server enforces."""
    return Limits(
        max_page_limit=settings.max_page_limit,
        max_in_list=settings.max_in_list,
        max_regex_length=settings.max_regex_length,
        max_stat_stages=settings.max_stat_stages,
    )


@dataclass
class Keys:
    """Where tokens are verified from, and (development only) the key that signs them."""

    authenticator: auth.Authenticator
    dev_private_key: Path | None


def load_keys(settings: Settings) -> Keys:
    """The JWKS file when configured; otherwise the development key pair in the state folder."""
    if settings.jwks:
        return Keys(auth.Authenticator.from_jwks_file(Path(settings.jwks)), None)
    dev = auth.dev_keys(settings.state_path)
    return Keys(auth.Authenticator.from_jwks_file(dev.jwks), dev.private_key)


class App:
    """One running spaceone-job server."""

    def __init__(self, settings: Settings, store: JobStore | None = None, clock: Clock = utcnow):
        self.settings = settings
        self.store = store or connect(
            settings.mongodb_uri, settings.database, db_timeout_ms=settings.db_timeout_ms
        )
        self.clock = clock
        self.keys = load_keys(settings)
        self.service = JobService(self.store, limits_of(settings), settings.query_timeout_ms, clock)
        self.lifecycle = Lifecycle(self.store, clock)
        self.sweeper = Sweeper(self.lifecycle, settings.timeout_s, settings.sweep_interval_s)
        self.served: Served | None = None

    def prepare_store(self) -> int:
        """Create indexes and load the seed file; how many jobs were seeded."""
        if self.store.ping(self.settings.db_timeout_ms / 1000):
            self.store.ensure_indexes()
        else:
            LOG.warning("database unreachable at start; indexes will not be created now")
        if not self.settings.seed:
            return 0
        return seed.load(self.store, Path(self.settings.seed), self.clock())

    def start(self) -> int:
        """Serve; the bound port."""
        servicer = JobServicer(self.service, self.keys.authenticator)

        def register(server: grpc.Server) -> None:
            job_pb2_grpc.add_JobServicer_to_server(servicer, server)

        self.served = build_server(self.settings, [JOB_SERVICE], register)
        self.sweeper.start()
        LOG.info(
            "spaceone-job %s listening on %s:%d; store: %s; protobuf backend: %s; auth: %s",
            version(),
            self.settings.host,
            self.served.port,
            self.store.description,
            api_implementation.Type(),
            "development keys" if self.keys.dev_private_key else f"JWKS {self.settings.jwks}",
        )
        return self.served.port

    def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop: health NOT_SERVING, in-flight calls finish within the grace period."""
        self.sweeper.stop()
        if self.served is not None:
            self.served.stop(self.settings.grace_s if grace_s is None else grace_s)

    def wait(self) -> None:
        """Block until the server has stopped."""
        if self.served is not None:
            self.served.server.wait_for_termination()


def version() -> str:
    """The installed package version."""
    try:
        return package_version("spaceone-job")
    except PackageNotFoundError:
        return "unknown"
