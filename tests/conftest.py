"""Shared fixtures: a fresh store per test, development keys, tokens, the servicer in-process.

Every test that stores jobs runs twice, once on each store (ids ``[embedded]`` and ``[mongo]``):
the embedded store, and the MongoDB store, whose driver calls run over a
``mongomock.MongoClient`` here, or on a real MongoDB when ``SPACEONE_JOB_TEST_MONGODB_URI``
names one (each test then gets its own database there, dropped afterwards). A test about one
store's own means runs on that one only: ``@pytest.mark.only_on("embedded", why="…")``; one
where mongomock is not MongoDB skips the MongoDB store over mongomock:
``@pytest.mark.unlike_mongomock(why="…")``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc_testing
import mongomock
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import message
from hypothesis import settings as hypothesis_settings
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc, job_task_pb2

from spaceone_job import auth
from spaceone_job.api.servicer import Gate, JobServicer, JobTaskServicer
from spaceone_job.app import App
from spaceone_job.config import Settings
from spaceone_job.kinds import JOB, TASK
from spaceone_job.lifecycle import Lifecycle
from spaceone_job.query.filters import Limits
from spaceone_job.service import JobService, ReadService
from spaceone_job.store.connect import connect
from spaceone_job.store.model import new_document
from spaceone_job.store.mongo import MongoStore
from spaceone_job.store.protocol import Store

from .support.blocking import Blocking
from .support.wire_server import Wire

hypothesis_settings.register_profile("default", max_examples=100, deadline=None)
hypothesis_settings.register_profile("fuzz", max_examples=10_000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TEST_MONGODB_URI = os.environ.get("SPACEONE_JOB_TEST_MONGODB_URI", "")
JOB_SERVICE = job_pb2.DESCRIPTOR.services_by_name["Job"]
DESCRIPTORS = {
    "JobServicer": JOB_SERVICE,
    "JobTaskServicer": job_task_pb2.DESCRIPTOR.services_by_name["JobTask"],
}
D1, D2 = "domain-aaaaaaaaaaaa", "domain-bbbbbbbbbbbb"
WS1, WS2 = "ws-111111111111", "ws-222222222222"
NOW = datetime(2026, 5, 15, 12, 0, 0)
# The example job of the public API reference (job-api-reference.md), in JobInfo's JSON form.
REFERENCE_JOB: dict[str, Any] = {
    "job_id": "job-07994c7c9021",
    "status": "CANCELED",
    "options": {"no_preload_cache": False, "start": "2021-01-01T00:00:00Z"},
    "total_tasks": 2,
    "remained_tasks": 2,
    "data_source_id": "ds-fcba92ca73b1",
    "domain_id": "domain-58010aa2e451",
    "created_at": "2022-04-02T09:17:44.031Z",
    "updated_at": "2022-04-02T09:19:47.715Z",
    "finished_at": "2022-04-02T09:19:47.715Z",
    "changed": [{"start": "2021-01"}],
}


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


STORE_KINDS = ("embedded", "mongo")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "only_on(kind, why): run on one store only (embedded or mongo), and say why"
    )
    config.addinivalue_line(
        "markers",
        "unlike_mongomock(why): where mongomock answers unlike MongoDB; skipped on the MongoDB"
        " store over mongomock, run on a real server",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that uses a store, once per store kind (see the module doc)."""
    if "store_kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("only_on")
    if marker is None:
        metafunc.parametrize("store_kind", STORE_KINDS)
        return
    (kind,) = marker.args
    if kind not in STORE_KINDS or not marker.kwargs.get("why"):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: only_on(kind, why=...) expected")
    metafunc.parametrize("store_kind", [kind])


def mongo_store(database: str) -> MongoStore:
    """The MongoDB store: on the test server when one is named, else over mongomock."""
    if TEST_MONGODB_URI:
        found = connect(TEST_MONGODB_URI, database, db_timeout_ms=3000)
        assert isinstance(found, MongoStore)
        return found
    collection: Any = mongomock.MongoClient()[database][JOB.model._meta["collection"]]
    return MongoStore(collection, "MongoDB store over mongomock")


@pytest.fixture
def store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    unlike = request.node.get_closest_marker("unlike_mongomock")
    if unlike is not None and store_kind == "mongo" and not TEST_MONGODB_URI:
        pytest.skip(f"mongomock is not MongoDB here: {unlike.kwargs['why']}")
    database = f"spaceone-job-test-{uuid.uuid4().hex[:8]}"
    job_store = mongo_store(database) if store_kind == "mongo" else connect("", database)
    job_store.ensure_indexes()
    yield job_store
    job_store.drop()


@pytest.fixture
def wire() -> Iterator[Wire]:
    """The MongoDB store connected to mockupdb playing a replica set's primary."""
    served = Wire()
    yield served
    served.close()


def job(**fields: Any) -> dict[str, Any]:
    """A stored job document with upstream's defaults; ``fields`` override."""
    data: dict[str, Any] = {
        "domain_id": D1,
        "workspace_id": WS1,
        "data_source_id": "ds-000000000001",
        "resource_group": "WORKSPACE",
        "options": {"no_preload_cache": False, "start": None, "sync_mode": "SCHEDULED"},
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW - timedelta(minutes=59),
    }
    data.update(fields)
    return new_document(data)


@pytest.fixture
def add(store: Store) -> Callable[..., dict[str, Any]]:
    """Insert one job built by :func:`job`; returns it."""

    def insert(**fields: Any) -> dict[str, Any]:
        doc = job(**fields)
        store.insert([doc])
        return doc

    return insert


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> auth.DevKeys:
    return auth.dev_keys(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def authenticator(dev_keys: auth.DevKeys) -> auth.Authenticator:
    return auth.Authenticator.from_jwks_file(dev_keys.jwks)


Token = Callable[..., str]


@pytest.fixture(scope="session")
def token(dev_keys: auth.DevKeys) -> Token:
    """Mint a token: ``token(role, domain_id=..., workspace_id=..., **claims)``."""

    def mint(
        role: str = auth.DOMAIN_ADMIN,
        domain_id: str = D1,
        workspace_id: str | None = None,
        **extra: Any,
    ) -> str:
        if workspace_id is None and role in (auth.WORKSPACE_OWNER, auth.WORKSPACE_MEMBER):
            workspace_id = WS1
        return auth.mint_token(
            dev_keys.private_key,
            domain_id=domain_id,
            workspace_id=workspace_id,
            role=role,
            extra=extra,
        )

    return mint


@dataclass
class Answer:
    """What a call returned: the response or the status, details and trailing metadata."""

    response: Any
    code: grpc.StatusCode
    details: str
    trailing: Sequence[tuple[str, Any]] = field(default_factory=tuple)

    @property
    def error_code(self) -> str:
        return self.details.split(":", 1)[0]


class InProcess:
    """The servicers behind grpcio-testing's in-process server."""

    def __init__(self, *servicers: Any) -> None:
        self.server = grpc_testing.server_from_dictionary(
            {DESCRIPTORS[type(s).__name__]: Blocking(s) for s in servicers},
            grpc_testing.strict_real_time(),
        )
        self._services = [DESCRIPTORS[type(s).__name__] for s in servicers]

    def _method(self, name: str, request: message.Message) -> Any:
        """The method called ``name`` that takes ``request`` (Job and JobTask both have get)."""
        for service in self._services:
            method = service.methods_by_name.get(name)
            if method is not None and method.input_type is request.DESCRIPTOR:
                return method
        raise LookupError(f"no {name} takes {request.DESCRIPTOR.full_name}")

    def call(
        self,
        method: str,
        request: message.Message,
        token: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        pairs = list((metadata or {}).items())
        if token is not None:
            pairs.append(("token", token))
        rpc = self.server.invoke_unary_unary(
            self._method(method, request), tuple(pairs), request, timeout
        )
        response, trailing, code, details = rpc.termination()
        return Answer(response, code, details or "", trailing or ())


@pytest.fixture
def tasks(store: Store) -> Iterator[Store]:
    """The job tasks beside the jobs of ``store``."""
    task_store = store.sibling(TASK)
    task_store.ensure_indexes()
    yield task_store
    task_store.drop()


@pytest.fixture
def lifecycle(store: Store, tasks: Store, clock: Clock) -> Lifecycle:
    return Lifecycle(store, tasks, clock)


@pytest.fixture
def service(store: Store, clock: Clock, lifecycle: Lifecycle) -> JobService:
    return JobService(
        store, Limits(), query_timeout_ms=10_000, clock=clock, on_cancel=lifecycle.cancel_tasks
    )


@pytest.fixture
def api(
    service: JobService, tasks: Store, clock: Clock, authenticator: auth.Authenticator
) -> InProcess:
    """Job and JobTask in-process, sharing one call gate as the server does."""
    gate = Gate(64)
    task_service = ReadService(tasks, Limits(), 10_000, clock)
    return InProcess(
        JobServicer(service, authenticator, gate),
        JobTaskServicer(task_service, authenticator, gate),
    )


@pytest.fixture(scope="session")
def repo() -> Path:
    return Path(__file__).resolve().parents[1]


@dataclass
class Live:
    """A real server on an ephemeral port and a channel to it."""

    app: Any
    port: int
    channel: grpc.Channel

    def call(
        self, method: str, request: message.Message, token: str | None = None, timeout: float = 10
    ) -> Answer:
        stub = job_pb2_grpc.JobStub(self.channel)
        metadata = (("token", token),) if token is not None else ()
        try:
            response, call = getattr(stub, method).with_call(
                request, metadata=metadata, timeout=timeout
            )
        except grpc.RpcError as error:
            return Answer(
                None, error.code(), error.details() or "", error.trailing_metadata() or ()
            )
        return Answer(response, call.code(), call.details() or "", call.trailing_metadata() or ())


Serve = Callable[..., Live]


@pytest.fixture
def serve(store: Store, clock: Clock, dev_keys: auth.DevKeys) -> Iterator[Serve]:
    """Start real servers on ephemeral ports: ``serve(**settings)``; all stopped afterwards."""
    started: list[Live] = []

    def start(job_store: Store | None = None, **overrides: Any) -> Live:
        settings = Settings(
            **{
                "host": "127.0.0.1",
                "port": 0,
                "state_dir": str(dev_keys.jwks.parent),
                "grace_s": 1,
                "health_interval_s": 3600,
                **overrides,
            }
        )
        app = App(settings, store=job_store or store, clock=clock)
        port = app.start()
        live = Live(app, port, grpc.insecure_channel(f"127.0.0.1:{port}"))
        started.append(live)
        return live

    yield start
    for live in started:
        live.channel.close()
        live.app.stop(0)


@pytest.fixture
def live(serve: Serve) -> Live:
    return serve()


ServeProcess = Callable[..., Live]


@pytest.fixture
def serve_process(tmp_path: Path, dev_keys: auth.DevKeys) -> Iterator[ServeProcess]:
    """``spaceone-job serve`` in a process of its own on the embedded store, seeded with jobs:
    ``serve_process(jobs, *flags)``, each job a seed line's fields over D1's defaults. For loads
    whose timing matters: the server's interpreter is not the test's, with its client threads
    and its heap."""
    started: list[tuple[subprocess.Popen[bytes], grpc.Channel]] = []

    def start(jobs: Sequence[Mapping[str, Any]], *flags: str) -> Live:
        seed = tmp_path / f"seed-{len(started)}.jsonl"
        defaults = {"domain_id": D1, "data_source_id": "ds-000000000001"}
        seed.write_text("".join(json.dumps({**defaults, **job}) + "\n" for job in jobs))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "spaceone-job"),
                *("serve", "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed)),
                *("--state-dir", str(dev_keys.jwks.parent), "--log-level", "WARNING", *flags),
            ],
            stdout=subprocess.DEVNULL,
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        started.append((process, channel))
        grpc.channel_ready_future(channel).result(timeout=30)
        return Live(process, port, channel)

    yield start
    for process, channel in started:
        channel.close()
        process.terminate()
        process.wait(30)


T = TypeVar("T")


def together(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(0..count-1)`` on ``count`` threads released at the same moment; the results."""
    barrier = threading.Barrier(count)
    results: list[T] = []

    def run(i: int) -> None:
        barrier.wait()
        results.append(work(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.fixture
def writes(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every conditional update that changed a job, as the store performs them."""
    changed: list[dict[str, Any]] = []
    original = store.update_one

    def counting(*args: Any, **kwargs: Any) -> Any:
        doc = original(*args, **kwargs)
        if doc is not None:
            changed.append(doc)
        return doc

    monkeypatch.setattr(store, "update_one", counting)
    return changed


def assert_refused(answer: Answer, code: str, mentions: str) -> None:
    """The call was refused as the caller's mistake, with ``code``, naming ``mentions``."""
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, answer.details
    assert answer.error_code == code
    assert mentions in answer.details


def certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False,
) -> x509.Certificate:
    """A certificate for ``name`` (SAN localhost), self-signed or signed by ``issuer``."""
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def write_pem(
    tmp: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    """``name``.pem and ``name``.key in ``tmp``."""
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, and a server and a client certificate (for localhost) it signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test-ca", ca_key, None, ca=True)
    files: dict[str, Path] = {}
    files["ca"], _ = write_pem(tmp_path, "ca", ca, ca_key)
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[name], files[f"{name}_key"] = write_pem(
            tmp_path, name, certificate("localhost", key, (ca, ca_key)), key
        )
    return files
