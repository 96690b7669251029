"""Identity as upstream uses it: each domain's token-signing key, and app keys' permissions.

``Domain.get_public_key`` gives a domain's public key (a JWK as JSON) and ``App.check`` an app
key's permissions; both are called with this service's own SYSTEM_TOKEN and kept in a
:class:`TtlCache`: one fetch at a time per domain however many calls wait for it, bounded in
size, and entries that outlived their TTL still serve while identity cannot be reached;
refusals are remembered briefly, and the calls waiting on identity are bounded in number.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
import jwt
import prometheus_client
from spaceone.api.core.v2 import handler_pb2
from spaceone.api.identity.v2 import app_pb2, app_pb2_grpc, domain_pb2_grpc

from spaceone_job.errors import Code, ServiceError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
# A call with no deadline of its own waits this long for identity.
DEFAULT_TIMEOUT_S = 5.0
# How long a refusal is remembered: identity does not know the domain (or app), or it could not
# answer (short, so that a new domain is served soon after identity is back).
UNKNOWN_TTL_S = 30.0
FAILURE_TTL_S = 2.0
# The most keys fetched from identity at once, and the most calls that wait on identity at once
# (see TtlCache); the server keeps a thread for each of those.
MAX_FETCHES = 8
MAX_WAITING = 64
FETCHES = prometheus_client.Counter(
    "spaceone_job_identity_fetches", "Calls to identity by method", ["method"]
)
FAILURES = prometheus_client.Counter(
    "spaceone_job_identity_failures",
    "Failed calls to identity by method and code",
    ["method", "code"],
)


def unavailable(reason: str) -> ServiceError:
    """Identity could not answer in time: the caller may retry."""
    return ServiceError(
        Code.IDENTITY_UNAVAILABLE, "Identity cannot verify the token now; retry.", reason=reason
    )


class UnknownToIdentity(Exception):
    """Identity answered that it does not know the domain (or the app)."""


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


@dataclass
class Permits:
    """How many keys are fetched from identity at once, and how many calls wait at once."""

    fetches: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_FETCHES)
    )
    waits: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_WAITING)
    )

    def take(self, fetching: bool) -> bool:
        """A place to wait (and to fetch, for the call that fetches); False when none is free."""
        if not self.waits.acquire(blocking=False):
            return False
        if fetching and not self.fetches.acquire(blocking=False):
            self.waits.release()
            return False
        return True

    def give_back(self, fetching: bool) -> None:
        """Return what :meth:`take` gave."""
        if fetching:
            self.fetches.release()
        self.waits.release()


class TtlCache(Generic[T]):
    """Values by key for ``ttl_s``, at most ``size`` of them; one fetch per key at a time.

    A refusal is remembered too, for a short time (``UNKNOWN_TTL_S`` when identity does not know
    the key, ``FAILURE_TTL_S`` when it could not answer): a flood of tokens naming one unknown
    domain costs identity one call. ``permits`` bound, for every cache that shares them, how
    many keys are fetched at once and how many calls wait at once; a call beyond either is
    refused at once (a value that outlived its TTL still serves). So tokens of ever new domains
    cost identity a bounded number of calls at a time and hold a bounded number of threads.
    """

    def __init__(
        self,
        ttl_s: float,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        permits: Permits | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[T, float]] = OrderedDict()
        self._refused: OrderedDict[Hashable, tuple[Callable[[], Exception], float]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._permits = permits or Permits()
        self._lock = threading.Lock()

    def age(self, key: Hashable) -> float | None:
        """Seconds since ``key`` was fetched, or None."""
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else self._clock() - entry[1]

    def get(
        self, key: Hashable, fetch: Callable[[float], T], timeout: float, *, fresh: bool = False
    ) -> T:
        """The cached value, or ``fetch(timeout)`` once for every caller waiting on ``key``.

        ``fresh`` skips the cache (and a remembered refusal). When identity is unavailable, a
        value that outlived its TTL still serves.
        """
        with self._lock:
            now = self._clock()
            entry = self._entries.get(key)
            if entry is not None and not fresh and now - entry[1] < self.ttl_s:
                self._entries.move_to_end(key)
                return entry[0]
            refused = self._refused.get(key)
            if refused is not None and not fresh and now < refused[1]:
                return self._stale_or_raise(key, entry, refused[0]())
            flight = self._flights.get(key)
            leading = flight is None
            if not self._permits.take(leading):
                busy = unavailable("too many calls wait for identity")
                return self._stale_or_raise(key, entry, busy)
            if flight is None:
                flight = self._flights[key] = _Flight()
        try:
            if leading:
                self._fetch(key, fetch, timeout, flight)
            elif not flight.done.wait(timeout):
                raise unavailable("waiting for identity took too long")
        finally:
            self._permits.give_back(leading)
        if flight.error is None:
            value: T = flight.value
            return value
        return self._stale_or_raise(key, entry, flight.error)

    @staticmethod
    def _stale_or_raise(key: Hashable, entry: tuple[T, float] | None, error: BaseException) -> T:
        """A value past its TTL when identity is unavailable; else ``error``."""
        if isinstance(error, ServiceError) and entry is not None:
            LOG.warning("identity unavailable; serving the cached value for %s", key)
            return entry[0]
        raise error

    def _fetch(
        self, key: Hashable, fetch: Callable[[float], T], timeout: float, flight: _Flight
    ) -> None:
        try:
            flight.value = fetch(timeout)
            with self._lock:
                self._refused.pop(key, None)
                self._remember(self._entries, key, (flight.value, self._clock()))
        except Exception as exc:
            flight.error = exc
            ttl = UNKNOWN_TTL_S if isinstance(exc, UnknownToIdentity) else FAILURE_TTL_S
            with self._lock:
                self._remember(self._refused, key, (_again(exc), self._clock() + ttl))
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _remember(self, table: OrderedDict[Hashable, Any], key: Hashable, item: Any) -> None:
        table[key] = item
        table.move_to_end(key)
        while len(table) > self.size:
            table.popitem(last=False)


def _again(exc: Exception) -> Callable[[], Exception]:
    """How a remembered refusal is raised again: a new exception of the same meaning each
    time (the first one holds its traceback, and the call it failed in)."""
    if isinstance(exc, UnknownToIdentity):
        text = str(exc)
        return lambda: UnknownToIdentity(text)
    reason = exc.params.get("reason", "") if isinstance(exc, ServiceError) else type(exc).__name__
    return lambda: unavailable(reason)


def channel_to(endpoint: str) -> grpc.Channel:
    """A channel to ``grpc://host:port`` (plaintext) or ``grpcs://host:port`` (TLS)."""
    scheme, _, target = endpoint.partition("://")
    if scheme == "grpcs":
        return grpc.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.insecure_channel(target)


class Identity:
    """Identity's answers, cached: domains' public keys and apps' permissions."""

    def __init__(
        self,
        channel: grpc.Channel,
        system_token: str,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._domains = domain_pb2_grpc.DomainStub(channel)
        self._apps = app_pb2_grpc.AppStub(channel)
        self._metadata = (("token", system_token),)
        permits = Permits()
        self.keys: TtlCache[jwt.PyJWK] = TtlCache(ttl_s, clock=clock, permits=permits)
        self.apps: TtlCache[tuple[str, ...]] = TtlCache(ttl_s, clock=clock, permits=permits)

    def _call(self, method: str, call: Callable[..., Any], request: Any, timeout: float) -> Any:
        FETCHES.labels(method).inc()
        try:
            return call(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            FAILURES.labels(method, code.name).inc()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise UnknownToIdentity(error.details() or code.name) from error
            LOG.warning("identity %s: %s", method, code.name)
            raise unavailable(f"identity answered {code.name}") from error

    def public_key(
        self, domain_id: str, timeout: float | None, *, fresh: bool = False
    ) -> jwt.PyJWK:
        """The key ``domain_id``'s tokens are signed with."""

        def fetch(left: float) -> jwt.PyJWK:
            request = handler_pb2.AuthenticationRequest(domain_id=domain_id)
            answer = self._call("get_public_key", self._domains.get_public_key, request, left)
            try:
                return jwt.PyJWK.from_json(answer.public_key)
            except (jwt.PyJWTError, ValueError) as exc:
                raise UnknownToIdentity(f"identity's key of {domain_id} is no JWK") from exc

        return self.keys.get(domain_id, fetch, timeout or DEFAULT_TIMEOUT_S, fresh=fresh)

    def app_permissions(
        self, domain_id: str, client_id: str, timeout: float | None
    ) -> tuple[str, ...]:
        """What an app key (``client_id``, the token's ``jti``) may do."""

        def fetch(left: float) -> tuple[str, ...]:
            request = app_pb2.AppCheckRequest(client_id=client_id, domain_id=domain_id)
            answer = self._call("check", self._apps.check, request, left)
            return tuple(answer.permissions)

        return self.apps.get((domain_id, client_id), fetch, timeout or DEFAULT_TIMEOUT_S)
