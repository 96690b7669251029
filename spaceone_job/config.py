"""Settings: one typed object, every default and its documentation in one place.

Each field is a ``serve`` flag (``--mongodb-uri``) and an environment variable
(``SPACEONE_JOB_MONGODB_URI``); a flag wins over the environment, the environment over the default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "SPACEONE_JOB_"


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """How one server runs. Field docs become ``--help`` text and the README table."""

    host: str = _setting("0.0.0.0", "address to listen on")
    port: int = _setting(50051, "port to listen on (0 picks a free one)")
    mongodb_uri: str = _setting("", "MongoDB URI; empty = embedded in-memory store (development)")
    database: str = _setting("cost-analysis", "MongoDB database name (upstream's by default)")
    seed: str = _setting("", "JSON Lines file of jobs to load at start (all or nothing)")
    state_dir: str = _setting(".spaceone-job", "folder for the development key pair")
    jwks: str = _setting("", "JWKS file with the token-signing public keys; empty = dev keys")
    timeout_s: int = _setting(7200, "IN_PROGRESS jobs with no update this long become TIMEOUT")
    sweep_interval_s: int = _setting(60, "how often the timeout sweeper runs")
    max_page_limit: int = _setting(1000, "most results one list call returns")
    query_timeout_ms: int = _setting(10000, "time limit of one database query")
    db_timeout_ms: int = _setting(5000, "longest wait for an unreachable database")
    health_interval_s: float = _setting(5.0, "how often health checks that the database answers")
    max_in_list: int = _setting(1000, "most values in one in/not_in/contain_in/regex_in list")
    max_regex_length: int = _setting(256, "longest regex pattern accepted")
    max_stat_stages: int = _setting(32, "most aggregate stages in one stat query")
    max_receive_message_bytes: int = _setting(4 * 1024 * 1024, "largest request accepted")
    max_concurrent_rpcs: int = _setting(64, "Job calls served at once; more get RESOURCE_EXHAUSTED")
    grace_s: float = _setting(10.0, "how long in-flight calls may finish after SIGTERM")
    tls_cert: str = _setting("", "PEM server certificate (with --tls-key); empty = plaintext")
    tls_key: str = _setting("", "PEM private key of --tls-cert")
    tls_client_ca: str = _setting("", "PEM CA bundle; when set, clients must present a cert")
    metrics_port: int = _setting(-1, "Prometheus metrics port (-1 = off, 0 = any free port)")
    log_level: str = _setting("INFO", "logging level")

    @property
    def state_path(self) -> Path:
        """The state folder as a path."""
        return Path(self.state_dir)


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The fields of :class:`Settings`, in declaration order."""
    return dataclasses.fields(Settings)


def env_name(name: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + name.upper()


def from_sources(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags (``None`` = not given) over ``SPACEONE_JOB_*`` variables."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in setting_fields():
        convert: type = type(f.default)
        if flags.get(f.name) is not None:
            values[f.name] = convert(flags[f.name])
        elif env_name(f.name) in env:
            try:
                values[f.name] = convert(env[env_name(f.name)])
            except ValueError as exc:
                raise SystemExit(f"{env_name(f.name)}: not a valid {convert.__name__}") from exc
    return Settings(**values)
