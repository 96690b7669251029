"""The command line as a person runs it: mistakes at start are one line and a status, never a
traceback; the token command's options; variables that are not settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spaceone_job import auth
from spaceone_job.store.documents import StoreUnusable
from spaceone_job.store.mongomock_internals import TESTED_TEXT, check_version

from .conftest import Live, certificate, write_pem

pytestmark = pytest.mark.only_on("embedded", why="the command line, not storage")


CLI = str(Path(sys.executable).parent / "spaceone-job")


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPACEONE_JOB_")}
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        cwd=cwd,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], status: int, *mentions: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("spaceone-job: ")
    for mention in mentions:
        assert mention in lines[0], lines[0]


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    return {"SPACEONE_JOB_STATE_DIR": str(tmp_path / "state")}


def _pem_pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return write_pem(tmp_path, name, certificate("localhost", key, None), key)


SERVE = ["serve", "--host", "127.0.0.1", "--port", "0"]
Case = Callable[[Path], tuple[list[str], dict[str, str], tuple[str, ...]]]
START_MISTAKES: dict[str, Case] = {
    "--tls-key without --tls-cert": lambda t: (["--tls-key", "k.pem"], {}, ("--tls-cert",)),
    "--tls-client-ca without --tls-cert": lambda t: (
        ["--tls-client-ca", "ca.pem"],
        {},
        ("--tls-cert",),
    ),
    "SPACEONE_JOB_TLS_KEY without a certificate": lambda t: (
        [],
        {"SPACEONE_JOB_TLS_KEY": "k.pem"},
        ("--tls-cert", "SPACEONE_JOB_TLS_CERT"),
    ),
    "SPACEONE_JOB_TLS_CLIENT_CA without a certificate": lambda t: (
        [],
        {"SPACEONE_JOB_TLS_CLIENT_CA": "ca.pem"},
        ("--tls-cert",),
    ),
    "--tls-cert without --tls-key": lambda t: (["--tls-cert", "c.pem"], {}, ("--tls-key",)),
    "a missing certificate file": lambda t: (
        ["--tls-cert", str(t / "missing.pem"), "--tls-key", str(t / "missing.key")],
        {},
        ("--tls-cert", "cannot read", "missing.pem"),
    ),
    "a certificate file that is not PEM": lambda t: (
        ["--tls-cert", str(_text(t / "c.pem", "hello")), "--tls-key", str(_text(t / "k", "x"))],
        {},
        ("--tls-cert", "not a PEM certificate"),
    ),
    "swapped certificate and key": lambda t: (
        ["--tls-cert", str(_pem_pair(t, "a")[1]), "--tls-key", str(_pem_pair(t, "b")[0])],
        {},
        ("--tls-cert",),
    ),
    "a key of another certificate": lambda t: (
        ["--tls-cert", str(_pem_pair(t, "a")[0]), "--tls-key", str(_pem_pair(t, "b")[1])],
        {},
        ("--tls-key", "is not the key of --tls-cert"),
    ),
    "a missing JWKS": lambda t: (
        ["--jwks", str(t / "nope.json")],
        {},
        ("--jwks", "cannot read"),
    ),
    "a JWKS that is not JSON": lambda t: (
        ["--jwks", str(_text(t / "k.json", "{nope"))],
        {},
        ("--jwks", "not JSON"),
    ),
    "a single JWK instead of a set": lambda t: (
        ["--jwks", str(_text(t / "k.json", json.dumps({"kty": "RSA", "n": "x", "e": "AQAB"})))],
        {},
        ("--jwks", '{"keys": [...]}'),
    ),
    "a nonsense log level": lambda t: (["--log-level", "nonsense"], {}, ("--log-level",)),
    "a nonsense log format": lambda t: (["--log-format", "xml"], {}, ("--log-format",)),
    "a sweep interval of 0": lambda t: (["--sweep-interval-s", "0"], {}, ("--sweep-interval-s",)),
    "a negative timeout": lambda t: (["--timeout-s", "-1"], {}, ("--timeout-s",)),
    "a mistyped variable": lambda t: (
        [],
        {"SPACEONE_JOB_MONGO_URI": "mongodb://db"},
        ("SPACEONE_JOB_MONGO_URI", "did you mean SPACEONE_JOB_MONGODB_URI?"),
    ),
    "a variable that is not a number": lambda t: (
        [],
        {"SPACEONE_JOB_GRACE_S": "soon"},
        ("SPACEONE_JOB_GRACE_S", "'soon'"),
    ),
}


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(START_MISTAKES))
def test_a_mistake_at_start_is_one_line_and_status_2(
    tmp_path: Path, state: dict[str, str], case: str
) -> None:
    args, env, mentions = START_MISTAKES[case](tmp_path)
    done = run(*SERVE, *args, env={**state, **env})
    assert_one_line(done, 2, *mentions)


def test_a_port_in_use_stops_the_start(live: Live, state: dict[str, str]) -> None:
    done = run("serve", "--host", "127.0.0.1", "--port", str(live.port), env=state)
    assert_one_line(done, 1, f"127.0.0.1:{live.port}", "in use")


def test_the_token_command_finds_the_same_key_wherever_it_runs(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": ""}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run("token", "--domain-id", "domain-1", env=home, cwd=tmp_path / "a")
    second = run("token", "--domain-id", "domain-1", env=home, cwd=tmp_path / "b")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    state = tmp_path / "home" / ".local" / "state" / "spaceone-job"
    verifier = auth.Authenticator.from_jwks_file(state / auth.DEV_JWKS)
    for done in (first, second):
        assert verifier.verify(done.stdout.strip())["did"] == "domain-1"


def _claims(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    claims: dict[str, object] = jwt.decode(done.stdout.strip(), options={"verify_signature": False})
    return claims


def test_token_options(state: dict[str, str]) -> None:
    system = _claims(run("token", "--system", env=state))
    assert system["typ"] == "SYSTEM_TOKEN"
    scoped = _claims(
        run(
            "token",
            "--domain-id",
            "domain-1",
            "--workspace-id",
            "ws-1",
            "--role",
            "WORKSPACE_MEMBER",
            "--permissions",
            "cost-analysis:Job.read",
            "--ttl",
            "60",
            env=state,
        )
    )
    assert scoped["wid"] == "ws-1" and scoped["rol"] == "WORKSPACE_MEMBER"
    assert scoped["permissions"] == ["cost-analysis:Job.read"]
    assert scoped["exp"] == scoped["iat"] + 60  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "mention"),
    [
        (["--domain-id", "d", "--ttl", "0"], "--ttl"),
        (["--domain-id", " "], "--domain-id"),
        ([], "--domain-id"),
        (["--domain-id", "d", "--role", "WORKSPACE_OWNER"], "--workspace-id"),
    ],
)
def test_token_usage_errors(state: dict[str, str], args: list[str], mention: str) -> None:
    assert_one_line(run("token", *args, env=state), 2, mention)


def test_token_help_describes_every_option_with_its_default(state: dict[str, str]) -> None:
    done = run("token", "--help", env=state)
    assert done.returncode == 0
    for option in ("--domain-id", "--workspace-id", "--role", "--system", "--permissions"):
        assert option in done.stdout
    assert "(default: 3600)" in done.stdout and "(default: DOMAIN_ADMIN)" in done.stdout


def test_the_test_suites_own_variable_is_not_refused(state: dict[str, str]) -> None:
    done = run("token", "--domain-id", "d", env={**state, "SPACEONE_JOB_TEST_MONGODB_URI": "x"})
    assert done.returncode == 0, done.stderr


def test_unused_key_material_is_not_written_by_help(tmp_path: Path) -> None:
    done = run("serve", "--help", env={"SPACEONE_JOB_STATE_DIR": str(tmp_path / "s")})
    assert done.returncode == 0 and "--metrics-host" in done.stdout
    assert not (tmp_path / "s").exists()


def test_private_key_is_owner_only(tmp_path: Path) -> None:
    keys = auth.dev_keys(tmp_path / "s")
    assert keys.private_key.stat().st_mode & 0o077 == 0
    assert serialization.load_pem_private_key(keys.private_key.read_bytes(), None)


def test_an_untested_mongomock_stops_the_embedded_stores_start_in_one_line(
    tmp_path: Path, state: dict[str, str]
) -> None:
    # A distribution found first on the path answers importlib.metadata's version question.
    fake = tmp_path / "site" / "mongomock-4.9.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: mongomock\nVersion: 4.9.0\n")
    done = run(*SERVE, env={**state, "PYTHONPATH": str(tmp_path / "site")})
    assert_one_line(done, 1, "mongomock 4.9.0", "mongomock>=4.3.0,<4.4")


@pytest.mark.parametrize(
    ("installed", "tested"),
    [("4.3.0", True), ("4.3.7", True), ("4.3.0rc1", True), ("4.2.9", False), ("4.4.0", False)],
)
def test_the_embedded_store_runs_on_the_mongomock_versions_it_was_tested_with(
    installed: str, tested: bool
) -> None:
    if tested:
        check_version(installed)
    else:
        with pytest.raises(StoreUnusable):
            check_version(installed)


def test_the_package_pins_the_mongomock_versions_the_embedded_store_was_tested_with(
    repo: Path,
) -> None:
    dependencies = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [d for d in dependencies if d.startswith("mongomock")] == [TESTED_TEXT]
