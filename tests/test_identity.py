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
import jwt
import pytest
from spaceone.api.core.v2 import handler_pb2
from spaceone.api.cost_analysis.v1 import job_pb2
from spaceone.api.identity.v2 import app_pb2, app_pb2_grpc, domain_pb2_grpc
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth, config
from spaceone_job.app import App
from spaceone_job.identity import MAX_FETCHES, TtlCache, UnknownToIdentity

from .conftest import D1, D2, Live, Serve
from .support.producing import create, report

pytestmark = pytest.mark.only_on("embedded", why="identity's keys and their caching, not storage")


SYSTEM_TOKEN = "system-token-that-must-never-be-logged"


def new_key(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A private key file, and its public JWK as identity publishes it."""
    path = tmp_path / f"{name}.pem"
    return path, json.dumps(auth.new_rsa_key(path, name))


@dataclass
class FakeIdentity(domain_pb2_grpc.DomainServicer, app_pb2_grpc.AppServicer):
    """identity's Domain.get_public_key and App.check, from dicts the test fills."""

    keys: dict[str, str] = field(default_factory=dict)
    apps: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    tokens: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    down: bool = False
    # How many calls were in progress at once, at the most.
    busy: int = 0
    most_busy: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, name: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls[name] += 1
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
        self.tokens.append(dict(context.invocation_metadata()).get("token", ""))
        self.released.wait(self.delay_s)
        with self.lock:
            self.busy -= 1
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
    fake.released.set()  # slow answers end now
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


def junk_token(tmp_path: Path, domain_id: str) -> str:
    """A token of ``domain_id`` signed by a key no identity knows."""
    key, _ = new_key(tmp_path, f"junk-{domain_id}")
    return token_of(key, domain_id)


def test_an_unknown_domain_is_asked_about_once_for_a_while(
    beside: tuple[FakeIdentity, Live, dict[str, Path]], tmp_path: Path
) -> None:
    fake, live, _ = beside
    junk = junk_token(tmp_path, "domain-junk000001")
    codes = {listing(live, junk).code for _ in range(100)}
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    assert fake.calls["domain-junk000001"] == 1


def test_an_answer_that_is_no_key_is_asked_for_once_for_a_while(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, private = beside
    fake.keys[D2] = "not a JWK"
    codes = {listing(live, token_of(private[D2], D2, n=i)).code for i in range(20)}
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    assert fake.calls[D2] == 1


def test_a_failed_fetch_is_remembered_for_a_short_time(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, private = beside
    fake.down = True
    codes = {listing(live, token_of(private[D2], D2, n=i)).code for i in range(20)}
    assert codes == {grpc.StatusCode.UNAVAILABLE}
    assert fake.calls[D2] == 1
    fake.down = False
    deadline = time.monotonic() + 10
    while listing(live, token_of(private[D2], D2)).code is not grpc.StatusCode.OK:
        assert time.monotonic() < deadline, "identity is asked again after a short while"
        time.sleep(0.2)


def flood(live: Live, tmp_path: Path, threads: int, seconds: float) -> threading.Thread:
    """``threads`` callers sending tokens of random, unknown domains for ``seconds``."""
    junk = [junk_token(tmp_path, f"domain-{n:012x}") for n in range(8)]
    until = time.monotonic() + seconds

    def attack(n: int) -> None:
        i = 0
        while time.monotonic() < until:
            i += 1
            forged = jwt.encode(
                {
                    **jwt.decode(junk[n % 8], options={"verify_signature": False}),
                    "did": f"domain-{n:04x}{i:08x}",
                },
                "x" * 32,
                algorithm="HS256",
            )
            listing(live, forged, timeout=3)

    workers = [threading.Thread(target=attack, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()

    def join() -> None:
        for worker in workers:
            worker.join(seconds + 5)

    joined = threading.Thread(target=join)
    joined.start()
    return joined


def test_junk_tokens_of_random_domains_crowd_out_no_cached_caller(
    beside: tuple[FakeIdentity, Live, dict[str, Path]], tmp_path: Path
) -> None:
    fake, live, private = beside
    mine = token_of(private[D1], D1)
    assert listing(live, mine).code is grpc.StatusCode.OK
    fake.delay_s = 0.3
    attack = flood(live, tmp_path, threads=70, seconds=3)
    time.sleep(0.5)
    codes = [listing(live, token_of(private[D1], D1, n=i)).code for i in range(38)]
    attack.join()
    assert codes == [grpc.StatusCode.OK] * 38
    assert fake.most_busy <= MAX_FETCHES, "fetches for new domains are bounded"


def test_a_slow_identity_takes_no_call_slot(
    identity: tuple[FakeIdentity, int], serve: Serve, tmp_path: Path
) -> None:
    fake, port = identity
    private, fake.keys[D1] = new_key(tmp_path, D1)
    (tmp_path / "system-token").write_text(SYSTEM_TOKEN)
    live = serve(
        identity_endpoint=f"grpc://127.0.0.1:{port}",
        system_token=f"@{tmp_path / 'system-token'}",
        max_concurrent_rpcs=16,
    )
    assert listing(live, token_of(private, D1)).code is grpc.StatusCode.OK
    fake.delay_s = 8
    attack = flood(live, tmp_path, threads=24, seconds=2)
    time.sleep(0.5)
    codes = [listing(live, token_of(private, D1, n=i)).code for i in range(10)]
    attack.join()
    assert codes == [grpc.StatusCode.OK] * 10


def test_an_hmac_key_from_identity_verifies_no_token(
    beside: tuple[FakeIdentity, Live, dict[str, Path]],
) -> None:
    fake, live, _ = beside
    secret = b"s" * 32
    fake.keys[D2] = json.dumps(
        {"kty": "oct", "k": jwt.utils.base64url_encode(secret).decode(), "alg": "HS256"}
    )
    forged = jwt.encode(
        {
            "did": D2,
            "typ": "ACCESS_TOKEN",
            "ver": "2.0",
            "rol": "DOMAIN_ADMIN",
            "exp": time.time() + 600,
        },
        secret,
        algorithm="HS256",
    )
    answer = listing(live, forged)
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED, answer.details


def test_a_jwks_file_with_an_hmac_key_stops_the_start(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    secret = jwt.utils.base64url_encode(b"s" * 32).decode()
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": secret, "alg": "HS256"}]}))
    with pytest.raises(config.SettingError, match="HS256"):
        App(config.Settings(jwks=str(jwks), state_dir=str(tmp_path)))


def test_watches_with_unknown_domains_do_not_delay_another_watcher(
    beside: tuple[FakeIdentity, Live, dict[str, Path]], tmp_path: Path
) -> None:
    fake, live, private = beside
    mine = token_of(private[D1], D1)
    created = create(live, mine, tasks=1).response
    stub = producer_pb2_grpc.WatchStub(live.channel)
    request = producer_pb2.WatchRequest(job_id=created.job.job_id)
    mine_stream = stub.watch(request, metadata=(("token", mine),), timeout=30)
    assert next(mine_stream).job.status == job_pb2.JobInfo.IN_PROGRESS
    fake.delay_s = 3
    junk = [
        stub.watch(request, metadata=(("token", junk_token(tmp_path, f"domain-w{n:011x}")),))
        for n in range(12)
    ]
    time.sleep(0.3)
    report(live, mine, "finish_task", created.tasks[0].job_task_id, "f")
    finished = time.monotonic()
    last = [event for event in mine_stream if event.HasField("job")][-1]
    assert last.job.status == job_pb2.JobInfo.SUCCESS
    assert time.monotonic() - finished < 1.5
    for stream in junk:
        stream.cancel()


def test_a_remembered_refusal_is_raised_afresh_each_time() -> None:
    cache: TtlCache[str] = TtlCache(300)

    def unknown(timeout: float) -> str:
        raise UnknownToIdentity("no such domain")

    raised = []
    for _ in range(3):
        with pytest.raises(UnknownToIdentity) as refused:
            cache.get("domain-x", unknown, 1)
        raised.append(refused.value)
    assert len({id(e) for e in raised}) == 3, "no exception object kept, nor its traceback"
