"""Tokens and scope: every cell of the contract's scope table, allowed and denied."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import auth
from spaceone_job.errors import ServiceError

from .conftest import D1, D2, WS1, WS2, InProcess, Token
from .support.scopes import CALLERS, CANCEL, DENIED, GET, JOBS, LIST, NOT_FOUND, OK

pytestmark = pytest.mark.only_on(
    "embedded",
    why="token checks and scopes; test_tenancy runs the scoped reads on both",
)


@pytest.fixture
def jobs(add: Callable[..., dict[str, Any]]) -> None:
    for job_id, domain_id, workspace_id in JOBS.values():
        add(job_id=job_id, domain_id=domain_id, workspace_id=workspace_id)


def _call(
    api: InProcess, token: Token, caller: str, method: str, request: Any
) -> tuple[grpc.StatusCode, Any]:
    role, metadata = CALLERS[caller]
    if role == "SYSTEM_TOKEN":
        answer = api.call(method, request, token(typ="SYSTEM_TOKEN"), metadata=metadata)
    else:
        answer = api.call(method, request, token(role))
    return answer.code, answer


@pytest.mark.usefixtures("jobs")
@pytest.mark.parametrize(
    ("caller", "job", "expected"),
    [(c, j, e) for c, row in GET.items() for j, e in row.items()],
)
def test_get_scope(api: InProcess, token: Token, caller: str, job: str, expected: Any) -> None:
    code, _ = _call(api, token, caller, "get", job_pb2.JobRequest(job_id=JOBS[job][0]))
    assert code is expected


@pytest.mark.usefixtures("jobs")
@pytest.mark.parametrize(
    ("caller", "job", "expected"),
    [(c, j, e) for c, row in CANCEL.items() for j, e in row.items()],
)
def test_cancel_scope(api: InProcess, token: Token, caller: str, job: str, expected: Any) -> None:
    code, answer = _call(api, token, caller, "cancel", job_pb2.JobRequest(job_id=JOBS[job][0]))
    assert code is expected
    if expected is DENIED:
        assert answer.error_code == "ERROR_PERMISSION_DENIED"
        still = api.call("get", job_pb2.JobRequest(job_id=JOBS[job][0]), token())
        assert still.response.status == job_pb2.JobInfo.IN_PROGRESS


@pytest.mark.usefixtures("jobs")
@pytest.mark.parametrize(("caller", "visible"), list(LIST.items()))
def test_list_and_stat_scope(api: InProcess, token: Token, caller: str, visible: set[str]) -> None:
    expected = {JOBS[name][0] for name in visible}
    code, answer = _call(api, token, caller, "list", job_pb2.JobQuery())
    assert code is OK
    assert {r.job_id for r in answer.response.results} == expected
    assert answer.response.total_count == len(expected)
    stat = job_pb2.JobStatQuery()
    stat.query.distinct = "job_id"
    code, answer = _call(api, token, caller, "stat", stat)
    assert code is OK
    assert set(answer.response["results"]) == expected


@pytest.mark.usefixtures("jobs")
def test_domain_admin_list_narrows_by_workspace_plus_domain_level(
    api: InProcess, token: Token
) -> None:
    found = api.call("list", job_pb2.JobQuery(workspace_id=WS2), token()).response
    assert {r.job_id for r in found.results} == {JOBS["ws2"][0], JOBS["star"][0]}


@pytest.mark.usefixtures("jobs")
def test_workspace_caller_cannot_list_another_workspace(api: InProcess, token: Token) -> None:
    found = api.call(
        "list", job_pb2.JobQuery(workspace_id=WS2), token(auth.WORKSPACE_MEMBER)
    ).response
    assert {r.job_id for r in found.results} == {JOBS["ws1"][0], JOBS["star"][0]}


def test_system_token_needs_x_domain_id(api: InProcess, token: Token) -> None:
    answer = api.call("list", job_pb2.JobQuery(), token(typ="SYSTEM_TOKEN"))
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT
    assert answer.error_code == "ERROR_REQUIRED_X_DOMAIN_ID"


def test_bearer_authorization_is_accepted(api: InProcess, token: Token) -> None:
    answer = api.call("list", job_pb2.JobQuery(), metadata={"authorization": f"Bearer {token()}"})
    assert answer.code is OK


def _foreign_key_token() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"did": D1, "rol": auth.DOMAIN_ADMIN, "ver": "2.0"}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": auth.DEV_KID})


BAD_TOKENS: dict[str, Callable[[Token], str | None]] = {
    "none": lambda t: None,
    "garbage": lambda t: "not-a-jwt",
    "unknown key": lambda t: _foreign_key_token(),
    "expired": lambda t: t(exp=1_000_000_000),
    "not yet valid": lambda t: t(nbf=4_000_000_000),
    "version 1.0": lambda t: t(ver="1.0"),
    "no did": lambda t: t(did=""),
    "workspace role without wid": lambda t: t(auth.WORKSPACE_OWNER, wid=""),
    "alg none": lambda t: jwt.encode(
        {"did": D1, "rol": auth.DOMAIN_ADMIN, "ver": "2.0"}, "", algorithm="none"
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens_are_unauthenticated(api: InProcess, token: Token, case: str) -> None:
    answer = api.call("list", job_pb2.JobQuery(), BAD_TOKENS[case](token))
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED
    assert answer.error_code == "ERROR_AUTHENTICATE_FAILURE"


DENIED_TOKENS: dict[str, Callable[[Token], str]] = {
    "role USER": lambda t: t("USER"),
    "role SYSTEM_ADMIN": lambda t: t("SYSTEM_ADMIN"),
    "no role": lambda t: t(""),
    "permissions without Job": lambda t: t(permissions=["cost-analysis:Cost.read"]),
    "read-only permission cancels": lambda t: t(permissions=["cost-analysis:Job.read"]),
}


@pytest.mark.parametrize("case", list(DENIED_TOKENS))
def test_roles_and_permissions_outside_the_job_api_are_denied(
    api: InProcess, token: Token, case: str
) -> None:
    answer = api.call(
        "cancel", job_pb2.JobRequest(job_id="job-000000000ws1"), DENIED_TOKENS[case](token)
    )
    assert answer.code is DENIED
    assert answer.error_code == "ERROR_PERMISSION_DENIED"


@pytest.mark.usefixtures("jobs")
@pytest.mark.parametrize(
    "granted", ["cost-analysis:", "cost-analysis:Job", "cost-analysis:Job.write"]
)
def test_permission_lists_grant_by_prefix(api: InProcess, token: Token, granted: str) -> None:
    answer = api.call(
        "cancel", job_pb2.JobRequest(job_id="job-000000000ws1"), token(permissions=[granted])
    )
    assert answer.code is OK


def test_authentication_fails_before_parameters_are_checked(api: InProcess) -> None:
    answer = api.call("get", job_pb2.JobRequest(), None)
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED


def test_injected_params_cannot_rewrite_the_scope(
    api: InProcess, token: Token, add: Callable[..., dict[str, Any]]
) -> None:
    add(job_id="job-0000000other", domain_id=D2)
    forged = token(injected_params={"domain_id": D2})
    answer = api.call("get", job_pb2.JobRequest(job_id="job-0000000other"), forged)
    assert answer.code is NOT_FOUND


def test_a_remembered_token_still_expires(dev_keys: auth.DevKeys) -> None:
    now = [1_000_000.0]
    authenticator = auth.Authenticator.from_jwks_file(dev_keys.jwks, clock=lambda: now[0])
    signed = jwt.encode(
        {
            "typ": "ACCESS_TOKEN",
            "did": D1,
            "rol": auth.DOMAIN_ADMIN,
            "ver": "2.0",
            "exp": 1_000_100,
            "nbf": 999_990,
        },
        dev_keys.private_key.read_bytes(),
        algorithm="RS256",
        headers={"kid": auth.DEV_KID},
    )
    metadata = [("token", signed)]
    assert authenticator.authenticate(metadata).domain_id == D1
    assert authenticator.authenticate(metadata).domain_id == D1
    now[0] = 1_000_100 + auth.LEEWAY_S + 1
    with pytest.raises(ServiceError) as raised:
        authenticator.authenticate(metadata)
    assert raised.value.code == "ERROR_AUTHENTICATE_FAILURE"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "typ": "ACCESS_TOKEN",
        "ver": "2.0",
        "did": D1,
        "rol": auth.DOMAIN_ADMIN,
        "exp": int(time.time()) + 600,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not DROP}


DROP = object()


def _forged(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token with any header and claims and a signature of garbage."""
    parts = (json.dumps(header).encode(), json.dumps(claims).encode(), b"garbage-signature")
    return ".".join(_b64(part) for part in parts)


def _signed_with(dev_keys: auth.DevKeys, **changes: Any) -> str:
    return jwt.encode(
        _claims(**changes),
        dev_keys.private_key.read_bytes(),
        algorithm="RS256",
        headers={"kid": auth.DEV_KID},
    )


STRICT_BAD: dict[str, Callable[[auth.DevKeys], str]] = {
    "no exp": lambda k: _signed_with(k, exp=DROP),
    "exp null": lambda k: _signed_with(k, exp=None),
    "nbf null": lambda k: _signed_with(k, nbf=None),
    "exp text": lambda k: _signed_with(k, exp="tomorrow"),
    "exp true": lambda k: _signed_with(k, exp=True),
    "typ REFRESH_TOKEN": lambda k: _signed_with(k, typ="REFRESH_TOKEN"),
    "typ null": lambda k: _signed_with(k, typ=None),
    "typ missing": lambda k: _signed_with(k, typ=DROP),
    "typ arbitrary": lambda k: _signed_with(k, typ="ANYTHING"),
    "workspace role with wid *": lambda k: _signed_with(k, rol=auth.WORKSPACE_OWNER, wid="*"),
    "workspace role with wid null": lambda k: _signed_with(k, rol=auth.WORKSPACE_MEMBER, wid=None),
    "workspace role with wid a list": lambda k: _signed_with(
        k, rol=auth.WORKSPACE_OWNER, wid=[WS1]
    ),
    "did a number": lambda k: _signed_with(k, did=7),
    "permissions text": lambda k: _signed_with(k, permissions="cost-analysis:"),
    "ES256 header, RSA kid, garbage signature": lambda k: _forged(
        {"alg": "ES256", "typ": "JWT", "kid": auth.DEV_KID}, _claims()
    ),
    "HS256 header, RSA kid": lambda k: _forged(
        {"alg": "HS256", "typ": "JWT", "kid": auth.DEV_KID}, _claims()
    ),
    "kid a list": lambda k: _forged({"alg": "RS256", "kid": [auth.DEV_KID]}, _claims()),
    "header not an object": lambda k: ".".join(
        [_b64(b"[1, 2]"), _b64(json.dumps(_claims()).encode()), _b64(b"x")]
    ),
    "claims not an object": lambda k: ".".join(
        [_b64(b'{"alg": "RS256", "kid": "spaceone-job-dev"}'), _b64(b"[1]"), _b64(b"x")]
    ),
}


@pytest.mark.parametrize("case", list(STRICT_BAD))
def test_malformed_tokens_are_unauthenticated_in_one_log_line(
    api: InProcess, dev_keys: auth.DevKeys, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = api.call("list", job_pb2.JobQuery(), STRICT_BAD[case](dev_keys))
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED, answer.details
    assert answer.error_code == "ERROR_AUTHENTICATE_FAILURE"
    ours = [r for r in caplog.records if r.name.startswith("spaceone_job")]
    assert [r for r in ours if r.exc_info or r.levelno >= logging.ERROR] == []


def test_a_far_expiry_is_fine(api: InProcess, dev_keys: auth.DevKeys) -> None:
    token = _signed_with(dev_keys, typ="CLIENT_SECRET", exp=int(time.time()) + 10 * 365 * 86400)
    assert api.call("list", job_pb2.JobQuery(), token).code is OK


@pytest.mark.usefixtures("jobs")
@pytest.mark.parametrize("method", ["cancel", "list"])
def test_a_rol_claim_of_system_token_is_no_system_caller(
    api: InProcess, token: Token, method: str
) -> None:
    forged = token("SYSTEM_TOKEN", permissions=["cost-analysis:Job.read"])
    request: Any = (
        job_pb2.JobRequest(job_id=JOBS["ws1"][0]) if method == "cancel" else job_pb2.JobQuery()
    )
    answer = api.call(method, request, forged)
    assert answer.code is DENIED
    assert answer.error_code == "ERROR_PERMISSION_DENIED"
    assert api.call("get", job_pb2.JobRequest(job_id=JOBS["ws1"][0]), token()).response.status == (
        job_pb2.JobInfo.IN_PROGRESS
    )


@pytest.mark.usefixtures("jobs")
def test_a_system_caller_cannot_name_every_workspace(api: InProcess, token: Token) -> None:
    answer = api.call(
        "cancel",
        job_pb2.JobRequest(job_id=JOBS["star"][0]),
        token(typ="SYSTEM_TOKEN"),
        metadata={"x_domain_id": D1, "x_workspace_id": "*"},
    )
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("second", ["token", "authorization"])
def test_two_credentials_in_one_call_are_refused(api: InProcess, token: Token, second: str) -> None:
    admin = token()
    other = token(auth.WORKSPACE_MEMBER)
    value = other if second == "token" else f"Bearer {other}"
    answer = api.call("list", job_pb2.JobQuery(), admin, metadata={second: value})
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED
    assert answer.error_code == "ERROR_AUTHENTICATE_FAILURE"
