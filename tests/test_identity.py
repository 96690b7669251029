"""Beside Cloudforet: tokens verified with each domain's key from identity, app keys' permissions
from identity, key rotation, identity down; the JWKS file reloaded. A fake identity server on an
ephemeral port answers from keys the tests make."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from spaceone.api.core.v2 import handler_pb2
from spaceone.api.cost_analysis.v1 import job_pb2
from spaceone.api.identity.v2 import app_pb2, app_pb2_grpc, domain_pb2_grpc

from spaceone_job import auth, config
from spaceone_job.app import App

from .conftest import D1, D2, Live, Serve

SYSTEM_TOKEN = "system-token-that-must-never-be-logged"


def new_key(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A private key file, and its public JWK as identity publishes it."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / f"{name}.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    public.update(kid=name, alg="RS256")
    return path, json.dumps(public)


@dataclass
class FakeIdentity(domain_pb2_grpc.DomainServicer, app_pb2_grpc.AppServicer):
    """identity's Domain.get_public_key and App.check, from dicts the test fills."""

    keys: dict[str, str] = field(default_factory=dict)
    apps: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    tokens: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    down: bool = False

    def _enter(self, name: str, context: grpc.ServicerContext) -> None:
        self.calls[name] += 1
        self.tokens.append(dict(context.invocation_metadata()).get("token", ""))
        time.sleep(self.delay_s)
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "identity is down")

    def get_public_key(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter(request.domain_id, context)
        if request.domain_id not in self.keys:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such domain")
        return handler_pb2.AuthenticationResponse(
            domain_id=request.domain_id, public_key=self.keys[request.domain_id]
        )

    def check(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter(f"app:{request.client_id}", context)
        permissions = self.apps.get((request.domain_id, request.client_id))
        if permissions is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such app")
        return app_pb2.CheckAppInfo(permissions=permissions)


@pytest.fixture
def identity() -> Iterator[tuple[FakeIdentity, int]]:
    fake = FakeIdentity()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    domain_pb2_grpc.add_DomainServicer_to_server(fake, server)
    app_pb2_grpc.add_AppServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake, port
    server.stop(0)


@pytest.fixture
def beside(
    identity: tuple[FakeIdentity, int], serve: Serve, tmp_path: Path
) -> tuple[FakeIdentity, Live, dict[str, Path]]:
    """A server that verifies tokens with identity's keys of two domains."""
    fake, port = identity
    private: dict[str, Path] = {}
    for domain_id in (D1, D2):
        private[domain_id], fake.keys[domain_id] = new_key(tmp_path, domain_id)
    token_file = tmp_path / "system-token"
    token_file.write_text(SYSTEM_TOKEN + "\n")
    live = serve(
        identity_endpoint=f"grpc://127.0.0.1:{port}",
        system_token=f"@{token_file}",
        identity_key_ttl_s=300,
        metrics_port=0,
    )
    return fake, live, private


def token_of(private: Path, domain_id: str, kid: str | None = None, **extra: Any) -> str:
    return auth.mint_token(private, domain_id=domain_id, kid=kid or domain_id, extra=extra)


def listing(live: Live, token: str, timeout: float = 10) -> Any:
    return live.call("list", job_pb2.JobQuery(), token, timeout=timeout)


def test_each_domain_is_verified_with_its_own_key(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, private = beside
    assert listing(live, token_of(private[D1], D1)).code is grpc.StatusCode.OK
    assert listing(live, token_of(private[D2], D2)).code is grpc.StatusCode.OK
    forged = listing(live, token_of(private[D2], D1))  # D1's claims, D2's key
    assert forged.code is grpc.StatusCode.UNAUTHENTICATED
    assert fake.tokens and set(fake.tokens) == {SYSTEM_TOKEN}, "identity is called as the service"
    assert fake.calls[D1] <= 2 and fake.calls[D2] == 1, "keys are cached"


def test_a_domain_identity_does_not_know_is_unauthenticated(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    _, live, private = beside
    answer = listing(live, token_of(private[D1], "domain-unknown00"))
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED
    assert answer.error_code == "ERROR_AUTHENTICATE_FAILURE"


def test_a_rotated_key_is_fetched_again_at_most_once_per_ttl(
    beside: tuple[FakeIdentity, Live, dict[str, Path]], tmp_path: Path
) -> None:
    fake, live, private = beside
    assert listing(live, token_of(private[D1], D1)).code is grpc.StatusCode.OK
    rotated, fake.keys[D1] = new_key(tmp_path, "rotated")
    assert listing(live, token_of(rotated, D1, kid="rotated")).code is grpc.StatusCode.OK
    assert fake.calls[D1] == 2
    again, fake.keys[D1] = new_key(tmp_path, "again")
    answer = listing(live, token_of(again, D1, kid="again"))
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED, "no second refetch within the TTL"
    assert fake.calls[D1] == 2


def test_identity_down_cached_keys_keep_working_others_are_unavailable_in_time(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, private = beside
    assert listing(live, token_of(private[D1], D1)).code is grpc.StatusCode.OK
    fake.down = True
    assert listing(live, token_of(private[D1], D1, nonce=1)).code is grpc.StatusCode.OK
    answer = listing(live, token_of(private[D2], D2))
    assert answer.code is grpc.StatusCode.UNAVAILABLE
    assert answer.error_code == "ERROR_IDENTITY_UNAVAILABLE"


def test_a_slow_identity_never_holds_a_call_past_its_deadline(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, private = beside
    fake.delay_s = 5
    started = time.monotonic()
    answer = listing(live, token_of(private[D2], D2), timeout=1)
    assert time.monotonic() - started < 1.5
    assert answer.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_fifty_first_calls_for_one_domain_fetch_its_key_once(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, private = beside
    fake.delay_s = 0.3
    tokens = [token_of(private[D2], D2, nonce=i) for i in range(50)]
    barrier = threading.Barrier(50)
    codes: list[grpc.StatusCode] = []

    def call(i: int) -> None:
        barrier.wait()
        codes.append(listing(live, tokens[i]).code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert codes == [grpc.StatusCode.OK] * 50
    assert fake.calls[D2] == 1


def test_app_keys_get_their_permissions_from_identity(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, private = beside
    fake.apps[(D1, "client-1")] = ["cost-analysis:Job.read"]
    app_token = token_of(private[D1], D1, own="APP", jti="client-1", permissions=["*"])
    assert listing(live, app_token).code is grpc.StatusCode.OK
    cancel = live.call("cancel", job_pb2.JobRequest(job_id="job-000000000001"), app_token)
    assert cancel.code is grpc.StatusCode.PERMISSION_DENIED, "identity's list, not the claim"
    unknown = token_of(private[D1], D1, own="APP", jti="client-unknown")
    assert listing(live, unknown).code is grpc.StatusCode.UNAUTHENTICATED


def test_the_system_token_is_never_logged(
    beside: tuple[FakeIdentity, Live, dict[str, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, live, private = beside
    listing(live, token_of(private[D1], D1))
    fake.down = True
    listing(live, token_of(private[D2], D2))
    assert SYSTEM_TOKEN not in caplog.text
    assert SYSTEM_TOKEN not in repr(live.app.settings)


def test_identity_metrics(beside: tuple[FakeIdentity, Live, dict[str, Path]]) -> None:
    fake, live, private = beside
    listing(live, token_of(private[D1], D1))
    fake.down = True
    listing(live, token_of(private[D2], D2))
    with urllib.request.urlopen(
        f"http://127.0.0.1:{live.app.metrics_port}/metrics", timeout=5
    ) as page:
        text = page.read().decode()
    assert 'spaceone_job_identity_fetches_total{method="get_public_key"}' in text
    assert (
        'spaceone_job_identity_failures_total{code="UNAVAILABLE",method="get_public_key"}' in text
    )


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        (
            {"identity_endpoint": "grpc://id:50051", "jwks": "k.json", "system_token": "t"},
            "choose one",
        ),
        ({"identity_endpoint": "grpc://id:50051"}, "--system-token"),
        ({"identity_endpoint": "id:50051", "system_token": "t"}, "grpc://host:port"),
    ],
)
def test_identity_settings_are_checked(values: dict[str, Any], mentions: str) -> None:
    with pytest.raises(config.SettingError, match=mentions):
        config.Settings(**values)


def test_the_jwks_file_is_read_again(serve: Serve, tmp_path: Path) -> None:
    first, first_jwk = new_key(tmp_path, "first")
    second, second_jwk = new_key(tmp_path, "second")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [json.loads(first_jwk)]}))
    live = serve(jwks=str(jwks), jwks_reload_s=0.1)
    assert listing(live, token_of(first, D1, kid="first")).code is grpc.StatusCode.OK
    assert listing(live, token_of(second, D1, kid="second")).code is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    jwks.write_text(json.dumps({"keys": [json.loads(second_jwk)]}))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if listing(live, token_of(second, D1, kid="second", n=time.time())).code.value[0] == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the rotated JWKS was not picked up")
    jwks.write_text("{broken")
    time.sleep(0.3)
    assert listing(live, token_of(second, D1, kid="second", n=1)).code is grpc.StatusCode.OK


def test_sighup_reloads_the_jwks(tmp_path: Path) -> None:
    _, first_jwk = new_key(tmp_path, "first")
    second, second_jwk = new_key(tmp_path, "second")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [json.loads(first_jwk)]}))
    app = App(config.Settings(jwks=str(jwks), state_dir=str(tmp_path)))
    jwks.write_text(json.dumps({"keys": [json.loads(second_jwk)]}))
    app.reload_keys()  # what the SIGHUP handler calls
    assert app.keys.authenticator.verify(token_of(second, D1, kid="second"))["did"] == D1
