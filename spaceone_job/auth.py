"""SpaceONE tokens -> a :class:`Caller`; roles and permissions; development keys.

Tokens are JWTs signed RS256 (or ES256) by keys published in a JWKS file; PyJWT checks the
signature, ``exp`` and ``nbf``. The claims follow SpaceONE identity: ``did`` (domain), ``wid``
(workspace), ``rol`` (role), ``ver`` ("2.0"), ``typ`` and ``permissions``. A ``SYSTEM_TOKEN``
acts for the domain and workspace named in the ``x_domain_id``/``x_workspace_id`` metadata.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from spaceone_job.errors import Code, ServiceError
from spaceone_job.identity import Identity, UnknownToIdentity

LOG = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "ES256"]
LEEWAY_S = 30
DOMAIN_ADMIN = "DOMAIN_ADMIN"
WORKSPACE_OWNER = "WORKSPACE_OWNER"
WORKSPACE_MEMBER = "WORKSPACE_MEMBER"
SYSTEM_TOKEN = "SYSTEM_TOKEN"
ALLOWED_ROLES = frozenset({DOMAIN_ADMIN, WORKSPACE_OWNER, WORKSPACE_MEMBER})
READ = "cost-analysis:Job.read"
WRITE = "cost-analysis:Job.write"
TASK_READ = "cost-analysis:JobTask.read"
DEV_KID = "spaceone-job-dev"
DEV_PRIVATE_KEY = "dev-signing-key.pem"
DEV_JWKS = "dev-jwks.json"


class KeysError(ValueError):
    """A key source (JWKS file) that cannot be used."""


class UnknownKey(Exception):
    """No key of the source matches the token."""


def _decoded(token: str, key: jwt.PyJWK) -> dict[str, Any]:
    if key.algorithm_name not in ALGORITHMS:
        # A symmetric (oct) key from identity or a file verifies nothing: tokens are RS256/ES256.
        raise jwt.InvalidKeyError(f"a {key.algorithm_name} key verifies no token here")
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        # The key decides the algorithm; the token's header cannot choose another.
        algorithms=[key.algorithm_name],
        # exp and nbf are checked on every call, by _check_times, against our clock.
        options={
            "verify_aud": False,
            "verify_iss": False,
            "verify_exp": False,
            "verify_nbf": False,
        },
    )
    return claims


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as scope is concerned."""

    domain_id: str
    workspace_id: str | None
    role: str
    permissions: tuple[str, ...] = ()
    # Only a token of typ SYSTEM_TOKEN makes a system caller, whatever its rol claim says.
    system: bool = False
    # When the token expires (its exp, seconds since the epoch).
    expires_at: float | None = None
    # Who, for the event trail: user:<aud>, app:<aud> or system.
    actor: str = ""
    # The call's x-request-id (set as the call lets it in), for the event trail.
    request_id: str = ""

    @property
    def workspace_scoped(self) -> bool:
        """Whether the caller sees one workspace (plus domain-level ``*`` jobs) only."""
        return self.workspace_id is not None


Metadata = Sequence[tuple[str, Any]]
TOKEN_TYPES = frozenset({"ACCESS_TOKEN", "CLIENT_SECRET", SYSTEM_TOKEN})
DOMAIN_LEVEL = "*"


def _denied(reason: str) -> ServiceError:
    return ServiceError(Code.AUTHENTICATE_FAILURE, "Authentication failed.", message=reason)


def _values(metadata: Metadata, key: str) -> list[str]:
    return [str(value).strip() for name, value in metadata if name == key]


def token_from(metadata: Metadata) -> str:
    """The raw JWT from ``token`` metadata or ``authorization: Bearer``; exactly one of them."""
    tokens = _values(metadata, "token")
    authorizations = _values(metadata, "authorization")
    if len(tokens) + len(authorizations) > 1:
        raise _denied("send one credential: one 'token' or one 'authorization' entry")
    if authorizations:
        scheme, _, value = authorizations[0].partition(" ")
        if scheme.lower() == "bearer":
            tokens = [value.strip()]
    if not tokens or not tokens[0]:
        raise _denied("no token: send metadata 'token' or 'authorization: Bearer <jwt>'")
    return tokens[0]


def _one(metadata: Metadata, key: str) -> str:
    """The single value of ``key`` (empty when absent); two values are refused."""
    values = _values(metadata, key)
    if len(values) > 1:
        raise ServiceError(Code.INVALID_PARAMETER, "Send this metadata once.", key=key)
    return values[0] if values else ""


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required and name not in claims:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _denied(f"{name} is {'required and ' if required else ''}a number of seconds")
    return float(value)


def _header(token: str) -> dict[str, Any]:
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _denied("the token could not be decoded") from exc
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _denied("the token's kid is not text")
    return header


def _read_jwks(path: Path) -> dict[str | None, jwt.PyJWK]:
    """The keys of a JWKS (RFC 7517) file by kid; :class:`KeysError` says what is wrong."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise KeysError(f"cannot read {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeysError(f"{path} is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysError(f'{path} is not a JWK set: it needs {{"keys": [...]}}')
    try:
        keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(document).keys}
    except jwt.PyJWTError as exc:
        raise KeysError(f"{path} holds no usable public key: {exc}") from exc
    for key in keys.values():
        if key.algorithm_name not in ALGORITHMS:
            raise KeysError(
                f"{path} holds a {key.algorithm_name} key ({key.key_id}); tokens are verified"
                f" with {' or '.join(ALGORITHMS)} public keys only"
            )
    return keys


class KeySource(Protocol):
    """Where the key that signed a token comes from."""

    # Whether finding a key may ask another service (and wait on the network).
    remote: bool

    def key(self, token: str, header: Mapping[str, Any], timeout: float | None) -> jwt.PyJWK:
        """The key ``token`` should be verified with."""

    def rotated(
        self, token: str, header: Mapping[str, Any], timeout: float | None
    ) -> jwt.PyJWK | None:
        """A newer key after a failed signature check (key rotation), or None."""


class JwksKeys:
    """The keys of a JWKS file, read again by :meth:`reload` (SIGHUP, ``--jwks-reload-s``)."""

    remote = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys = _read_jwks(path)

    def reload(self) -> bool:
        """Read the file again; on a mistake keep the keys in use (and log it)."""
        try:
            self._keys = _read_jwks(self.path)
        except KeysError as exc:
            LOG.warning("JWKS not reloaded, the keys in use stay: %s", exc)
            return False
        LOG.info("JWKS reloaded from %s: %d key(s)", self.path, len(self._keys))
        return True

    def key(self, token: str, header: Mapping[str, Any], timeout: float | None) -> jwt.PyJWK:
        """The key named by the token's ``kid`` (the only key, when it names none)."""
        keys = self._keys
        kid = header.get("kid")
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        key = keys.get(kid)
        if key is None:
            raise UnknownKey("the token was signed by an unknown key")
        return key

    def rotated(
        self, token: str, header: Mapping[str, Any], timeout: float | None
    ) -> jwt.PyJWK | None:
        """A file's keys change by reload only."""
        return None


class DomainKeys:
    """Each domain's key from identity, by the token's (unverified) ``did``, as upstream."""

    remote = True

    def __init__(self, identity: Identity, clock: Callable[[], float] = time.monotonic) -> None:
        self.identity = identity
        self._clock = clock
        self._refetched: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _domain(token: str) -> str:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _denied("the token could not be decoded") from exc
        domain_id = claims.get("did") if isinstance(claims, dict) else None
        if not isinstance(domain_id, str) or not domain_id:
            raise _denied("the token has no domain (did)")
        return domain_id

    def key(self, token: str, header: Mapping[str, Any], timeout: float | None) -> jwt.PyJWK:
        """The domain's key, cached; identity not knowing the domain is a bad token."""
        domain_id = self._domain(token)
        try:
            return self.identity.public_key(domain_id, timeout)
        except UnknownToIdentity as exc:
            raise _denied("identity does not know the token's domain") from exc

    def rotated(
        self, token: str, header: Mapping[str, Any], timeout: float | None
    ) -> jwt.PyJWK | None:
        """The domain's key fetched again, at most once per TTL (a rotated key)."""
        domain_id = self._domain(token)
        now = self._clock()
        with self._lock:
            last = self._refetched.get(domain_id)
            if last is not None and now - last < self.identity.keys.ttl_s:
                return None
            self._refetched[domain_id] = now
        try:
            return self.identity.public_key(domain_id, timeout, fresh=True)
        except UnknownToIdentity as exc:
            raise _denied("identity does not know the token's domain") from exc


class Authenticator:
    """Verifies tokens against a :class:`KeySource`.

    A token's checked signature is remembered (up to ``CACHE_SIZE`` tokens), so a client that
    reuses its token pays for the signature check once; ``exp`` and ``nbf`` are checked on
    every call against ``clock``. With ``identity``, an app key's permissions come from it.
    """

    CACHE_SIZE = 4096

    def __init__(
        self,
        source: KeySource,
        clock: Callable[[], float] = time.time,
        hint: str = "",
        identity: Identity | None = None,
    ) -> None:
        self.source = source
        self.identity = identity
        self._clock = clock
        # Logged when a token was not signed by these keys (development: where the keys are).
        self.hint = hint
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def may_wait(self) -> bool:
        """Whether authenticating a call may wait on another service (keys, app permissions)."""
        return self.source.remote or self.identity is not None

    @classmethod
    def from_jwks_file(cls, path: Path, clock: Callable[[], float] = time.time) -> Authenticator:
        """Keys from a JWKS (RFC 7517) file; :class:`KeysError` says what is wrong with it."""
        return cls(JwksKeys(path), clock)

    def _log_hint(self, what: str) -> None:
        if self.hint:
            LOG.warning("a token %s: %s", what, self.hint)

    def verify(self, token: str, timeout: float | None = None) -> dict[str, Any]:
        """The token's claims, once its signature, ``exp`` and ``nbf`` check out."""
        with self._lock:
            claims = self._verified.get(token)
            if claims is not None:
                self._verified.move_to_end(token)
        if claims is None:
            claims = self._signed_claims(token, timeout)
            with self._lock:
                self._verified[token] = claims
                while len(self._verified) > self.CACHE_SIZE:
                    self._verified.popitem(last=False)
        self._check_times(claims)
        return claims

    def _signed_claims(self, token: str, timeout: float | None) -> dict[str, Any]:
        header = _header(token)
        try:
            key = self.source.key(token, header, timeout)
        except UnknownKey as exc:
            self._log_hint("signed by an unknown key")
            raise _denied(str(exc)) from exc
        try:
            return _decoded(token, key)
        except jwt.InvalidSignatureError:
            newer = self.source.rotated(token, header, timeout)
            if newer is not None:
                try:
                    return _decoded(token, newer)
                except Exception as exc:  # any failure to verify is one
                    raise _denied("the token is invalid") from exc
            self._log_hint("failed verification")
            raise _denied("the token is invalid") from None
        except Exception as exc:  # any failure to verify, whatever the library raised, is one
            self._log_hint("failed verification")
            raise _denied("the token is invalid") from exc

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        expires = _number(claims, "exp", required=True)
        not_before = _number(claims, "nbf", required=False)
        if expires is not None and now > expires + LEEWAY_S:
            raise expired()
        if not_before is not None and now < not_before - LEEWAY_S:
            raise _denied("the token is not valid yet")

    def authenticate(self, metadata: Metadata, timeout: float | None = None) -> Caller:
        """The caller behind the call's metadata (the raw pairs, repeated keys included)."""
        claims = self.verify(token_from(metadata), timeout)
        kind = claims.get("typ")
        if kind not in TOKEN_TYPES:
            raise _denied(f"tokens of type {str(kind)[:40]!r} are not accepted here")
        expires_at = _number(claims, "exp", required=True)
        if kind == SYSTEM_TOKEN:
            return dataclasses.replace(_system_caller(metadata), expires_at=expires_at)
        if claims.get("ver") != "2.0":
            raise _denied("the token version is not 2.0")
        did = claims.get("did")
        if not isinstance(did, str) or not did:
            raise _denied("the token has no domain (did)")
        role = claims.get("rol")
        role = role if isinstance(role, str) else ""
        workspace_id = claims.get("wid") or None
        if role in (WORKSPACE_OWNER, WORKSPACE_MEMBER) and not _real_workspace(workspace_id):
            raise _denied("a workspace role needs a workspace id (wid)")
        permissions = claims.get("permissions") or []
        if claims.get("own") == "APP" and self.identity is not None:
            permissions = list(self._app_permissions(did, claims.get("jti"), timeout))
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise _denied("permissions is not a list of strings")
        audience = claims.get("aud")
        owner = "app" if claims.get("own") == "APP" else "user"
        return Caller(
            did,
            workspace_id if role in (WORKSPACE_OWNER, WORKSPACE_MEMBER) else None,
            role,
            tuple(permissions),
            expires_at=expires_at,
            actor=f"{owner}:{audience}" if isinstance(audience, str) and audience else owner,
        )

    def seconds_left(self, caller: Caller) -> float | None:
        """How long the caller's token stays valid (with the leeway), 0 once expired."""
        if caller.expires_at is None:
            return None
        return max(caller.expires_at + LEEWAY_S - self._clock(), 0.0)

    def _app_permissions(self, did: str, jti: Any, timeout: float | None) -> tuple[str, ...]:
        """An app key's permissions, from identity (as upstream); no jti, or an app identity
        does not know, is a bad token."""
        assert self.identity is not None
        if not isinstance(jti, str) or not jti:
            raise _denied("an app token needs its client id (jti)")
        try:
            return self.identity.app_permissions(did, jti, timeout)
        except UnknownToIdentity as exc:
            raise _denied("identity does not know the app") from exc


def expired() -> ServiceError:
    """A token that expired while it was in use (a watch stream)."""
    return _denied("the token has expired")


def _real_workspace(workspace_id: Any) -> bool:
    return isinstance(workspace_id, str) and workspace_id.strip() not in ("", DOMAIN_LEVEL)


def _system_caller(metadata: Metadata) -> Caller:
    domain_id = _one(metadata, "x_domain_id")
    if not domain_id:
        raise ServiceError(
            Code.REQUIRED_X_DOMAIN_ID,
            "A system token needs the x_domain_id metadata.",
            key="x_domain_id",
        )
    workspace_id = _one(metadata, "x_workspace_id") or None
    if workspace_id is not None and not _real_workspace(workspace_id):
        raise ServiceError(
            Code.INVALID_PARAMETER, "x_workspace_id names one workspace.", key="x_workspace_id"
        )
    return Caller(domain_id, workspace_id, SYSTEM_TOKEN, system=True, actor="system")


def authorize(caller: Caller, permission: str) -> None:
    """Refuse roles outside the Job API's and permission lists that do not grant ``permission``."""
    if caller.system:
        return
    allowed = caller.role in ALLOWED_ROLES and (
        not caller.permissions or any(permission.startswith(p) for p in caller.permissions)
    )
    if not allowed:
        raise ServiceError(
            Code.PERMISSION_DENIED, "Permission denied.", permission=permission, role=caller.role
        )


@dataclass(frozen=True)
class DevKeys:
    """The development key pair in the state folder."""

    private_key: Path
    jwks: Path


def dev_keys(state_dir: Path) -> DevKeys:
    """The development key pair, created on first use (private key readable by the owner only)."""
    keys = DevKeys(state_dir / DEV_PRIVATE_KEY, state_dir / DEV_JWKS)
    if keys.private_key.exists() and keys.jwks.exists():
        return keys
    state_dir.mkdir(parents=True, exist_ok=True)
    public = new_rsa_key(keys.private_key, DEV_KID)
    keys.jwks.write_text(json.dumps({"keys": [{**public, "use": "sig"}]}, indent=2))
    return keys


def new_rsa_key(private_key: Path, kid: str) -> dict[str, Any]:
    """A new RS256 key pair: the private key written to ``private_key`` (readable by the owner
    only), the public key returned as a JWK named ``kid``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    public.update(kid=kid, alg="RS256")
    return public


def mint_token(
    private_key: Path,
    *,
    domain_id: str,
    workspace_id: str | None = None,
    role: str = DOMAIN_ADMIN,
    kind: str = "ACCESS_TOKEN",
    ttl_s: int = 3600,
    permissions: Sequence[str] = (),
    kid: str = DEV_KID,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A SpaceONE-style access token signed with ``private_key``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "spaceone-job-dev",
        "typ": kind,
        "own": "USER",
        "ver": "2.0",
        "did": domain_id,
        "rol": role,
        "aud": "dev-user",
        "iat": now,
        "exp": now + ttl_s,
    }
    if workspace_id:
        claims["wid"] = workspace_id
    if permissions:
        claims["permissions"] = list(permissions)
    claims.update(extra or {})
    return jwt.encode(claims, private_key.read_bytes(), algorithm="RS256", headers={"kid": kid})
