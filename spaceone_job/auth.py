"""SpaceONE tokens -> a :class:`Caller`; roles and permissions; development keys.

Tokens are JWTs signed RS256 (or ES256) by keys published in a JWKS file; PyJWT checks the
signature, ``exp`` and ``nbf``. The claims follow SpaceONE identity: ``did`` (domain), ``wid``
(workspace), ``rol`` (role), ``ver`` ("2.0"), ``typ`` and ``permissions``. A ``SYSTEM_TOKEN``
acts for the domain and workspace named in the ``x_domain_id``/``x_workspace_id`` metadata.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from spaceone_job.errors import ServiceError

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
DEV_KID = "spaceone-job-dev"
DEV_PRIVATE_KEY = "dev-signing-key.pem"
DEV_JWKS = "dev-jwks.json"


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as scope is concerned."""

    domain_id: str
    workspace_id: str | None
    role: str
    permissions: tuple[str, ...] = ()

    @property
    def workspace_scoped(self) -> bool:
        """Whether the caller sees one workspace (plus domain-level ``*`` jobs) only."""
        return self.workspace_id is not None


def _denied(reason: str) -> ServiceError:
    return ServiceError("ERROR_AUTHENTICATE_FAILURE", "Authentication failed.", message=reason)


def token_from(metadata: Mapping[str, str]) -> str:
    """The raw JWT from ``token`` metadata or ``authorization: Bearer``."""
    token = metadata.get("token", "").strip()
    if not token:
        scheme, _, value = metadata.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    if not token:
        raise _denied("no token: send metadata 'token' or 'authorization: Bearer <jwt>'")
    return token


class Authenticator:
    """Verifies tokens against a set of public keys.

    A token's checked signature is remembered (up to ``CACHE_SIZE`` tokens), so a client that
    reuses its token pays for the signature check once; ``exp`` and ``nbf`` are checked on
    every call against ``clock``.
    """

    CACHE_SIZE = 4096

    def __init__(self, keys: jwt.PyJWKSet, clock: Callable[[], float] = time.time) -> None:
        self._keys = {key.key_id: key for key in keys.keys}
        self._clock = clock
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_jwks_file(cls, path: Path, clock: Callable[[], float] = time.time) -> Authenticator:
        """Keys from a JWKS (RFC 7517) file."""
        return cls(jwt.PyJWKSet.from_dict(json.loads(path.read_text())), clock)

    def _key(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _denied("the token could not be decoded") from exc
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid)
        if key is None:
            raise _denied("the token was signed by an unknown key")
        return key

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature, ``exp`` and ``nbf`` check out."""
        with self._lock:
            claims = self._verified.get(token)
            if claims is not None:
                self._verified.move_to_end(token)
        if claims is None:
            claims = self._signed_claims(token)
            with self._lock:
                self._verified[token] = claims
                while len(self._verified) > self.CACHE_SIZE:
                    self._verified.popitem(last=False)
        self._check_times(claims)
        return claims

    def _signed_claims(self, token: str) -> dict[str, Any]:
        key = self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=ALGORITHMS,
                # exp and nbf are checked on every call, by _check_times, against our clock.
                options={
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise _denied("the token is invalid") from exc
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        for name in ("exp", "nbf"):
            value = claims.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise _denied(f"{name} is not a number")
        if "exp" in claims and now > claims["exp"] + LEEWAY_S:
            raise _denied("the token has expired")
        if "nbf" in claims and now < claims["nbf"] - LEEWAY_S:
            raise _denied("the token is not valid yet")

    def authenticate(self, metadata: Mapping[str, str]) -> Caller:
        """The caller behind the call's metadata."""
        claims = self.verify(token_from(metadata))
        if claims.get("typ") == SYSTEM_TOKEN:
            domain_id = metadata.get("x_domain_id", "").strip()
            if not domain_id:
                raise ServiceError(
                    "ERROR_REQUIRED_X_DOMAIN_ID",
                    "A system token needs the x_domain_id metadata.",
                    key="x_domain_id",
                )
            workspace_id = metadata.get("x_workspace_id", "").strip() or None
            return Caller(domain_id, workspace_id, SYSTEM_TOKEN)
        if claims.get("ver") != "2.0":
            raise _denied("the token version is not 2.0")
        did = claims.get("did")
        if not isinstance(did, str) or not did:
            raise _denied("the token has no domain (did)")
        role = claims.get("rol")
        workspace_id = claims.get("wid") or None
        if role in (WORKSPACE_OWNER, WORKSPACE_MEMBER) and not isinstance(workspace_id, str):
            raise _denied("a workspace role needs a workspace (wid)")
        permissions = claims.get("permissions") or []
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise _denied("permissions is not a list of strings")
        return Caller(
            did,
            workspace_id if role != DOMAIN_ADMIN else None,
            str(role or ""),
            tuple(permissions),
        )


def authorize(caller: Caller, permission: str) -> None:
    """Refuse roles outside the Job API's and permission lists that do not grant ``permission``."""
    if caller.role == SYSTEM_TOKEN:
        return
    allowed = caller.role in ALLOWED_ROLES and (
        not caller.permissions or any(permission.startswith(p) for p in caller.permissions)
    )
    if not allowed:
        raise ServiceError(
            "ERROR_PERMISSION_DENIED", "Permission denied.", permission=permission, role=caller.role
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
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(keys.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    public.update(kid=DEV_KID, alg="RS256", use="sig")
    keys.jwks.write_text(json.dumps({"keys": [public]}, indent=2))
    return keys


def mint_token(
    private_key: Path,
    *,
    domain_id: str,
    workspace_id: str | None = None,
    role: str = DOMAIN_ADMIN,
    ttl_s: int = 3600,
    permissions: Sequence[str] = (),
    kid: str = DEV_KID,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A SpaceONE-style access token signed with ``private_key``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "spaceone-job-dev",
        "typ": "ACCESS_TOKEN",
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
