"""Tokens and scope: every cell of the contract's scope table, allowed and denied."""

from __future__ import annotations

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

OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
JOBS = {
    "ws1": ("job-000000000ws1", D1, WS1),
    "ws2": ("job-000000000ws2", D1, WS2),
    "star": ("job-00000000star", D1, "*"),
    "other": ("job-0000000other", D2, WS1),
}


@pytest.fixture
def jobs(add: Callable[..., dict[str, Any]]) -> None:
    for job_id, domain_id, workspace_id in JOBS.values():
        add(job_id=job_id, domain_id=domain_id, workspace_id=workspace_id)


CALLERS: dict[str, tuple[str, dict[str, str]]] = {
    # name: (role, metadata for SYSTEM_TOKEN)
    "domain admin": (auth.DOMAIN_ADMIN, {}),
    "workspace owner": (auth.WORKSPACE_OWNER, {}),
    "workspace member": (auth.WORKSPACE_MEMBER, {}),
    "system, domain": ("SYSTEM_TOKEN", {"x_domain_id": D1}),
    "system, workspace": ("SYSTEM_TOKEN", {"x_domain_id": D1, "x_workspace_id": WS1}),
}


def _call(
    api: InProcess, token: Token, caller: str, method: str, request: Any
) -> tuple[grpc.StatusCode, Any]:
    role, metadata = CALLERS[caller]
    if role == "SYSTEM_TOKEN":
        answer = api.call(method, request, token(typ="SYSTEM_TOKEN"), metadata=metadata)
    else:
        answer = api.call(method, request, token(role))
    return answer.code, answer


# caller -> job -> expected status of get
GET = {
    "domain admin": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "workspace owner": {"ws1": OK, "ws2": NOT_FOUND, "star": OK, "other": NOT_FOUND},
    "workspace member": {"ws1": OK, "ws2": NOT_FOUND, "star": OK, "other": NOT_FOUND},
    "system, domain": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "system, workspace": {"ws1": OK, "ws2": NOT_FOUND, "star": OK, "other": NOT_FOUND},
}
CANCEL = {
    "domain admin": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "workspace owner": {"ws1": OK, "ws2": NOT_FOUND, "star": DENIED, "other": NOT_FOUND},
    "workspace member": {"ws1": OK, "ws2": NOT_FOUND, "star": DENIED, "other": NOT_FOUND},
    "system, domain": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "system, workspace": {"ws1": OK, "ws2": NOT_FOUND, "star": DENIED, "other": NOT_FOUND},
}
LIST = {
    "domain admin": {"ws1", "ws2", "star"},
    "workspace owner": {"ws1", "star"},
    "workspace member": {"ws1", "star"},
    "system, domain": {"ws1", "ws2", "star"},
    "system, workspace": {"ws1", "star"},
}


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
        {"did": D1, "rol": auth.DOMAIN_ADMIN, "ver": "2.0", "exp": 1_000_100, "nbf": 999_990},
        dev_keys.private_key.read_bytes(),
        algorithm="RS256",
        headers={"kid": auth.DEV_KID},
    )
    metadata = {"token": signed}
    assert authenticator.authenticate(metadata).domain_id == D1
    assert authenticator.authenticate(metadata).domain_id == D1
    now[0] = 1_000_100 + auth.LEEWAY_S + 1
    with pytest.raises(ServiceError) as raised:
        authenticator.authenticate(metadata)
    assert raised.value.code == "ERROR_AUTHENTICATE_FAILURE"
