"""Settings: one typed object, every default and its documentation in one place.

Each field is a ``serve`` flag (``--mongodb-uri``) and an environment variable
(``SPACEONE_JOB_MONGODB_URI``); a flag wins over the environment, the environment over the default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "SPACEONE_JOB_"
# Variables with the prefix that are not settings: the test suite's own.
OTHER_VARIABLES = frozenset({"SPACEONE_JOB_TEST_MONGODB_URI"})
LOG_FORMATS = ("text", "json")


class SettingError(ValueError):
    """A setting that cannot work, said in one line naming the flag and its variable."""


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``); ValueError else."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"not true or false: {text!r}")


def converter(f: dataclasses.Field[Any]) -> Callable[[str], Any]:
    """How a setting's text (a flag or a variable) becomes its value."""
    return parse_bool if isinstance(f.default, bool) else type(f.default)


def default_state_dir() -> str:
    """The per-user state folder (``$XDG_STATE_HOME/spaceone-job``, else
    ``~/.local/state/spaceone-job``): ``serve`` and ``token`` find the same development key
    wherever they are run from."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "spaceone-job")


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """How one server runs. Field docs become ``--help`` text and the README table."""

    host: str = _setting("0.0.0.0", "address to listen on")
    port: int = _setting(50051, "port to listen on (0 picks a free one)")
    mongodb_uri: str = _setting("", "MongoDB URI; empty = embedded in-memory store (development)")
    database: str = _setting("cost-analysis", "MongoDB database name (upstream's by default)")
    create_indexes: bool = _setting(
        True, "create the indexes the queries need at start (false: operators manage them)"
    )
    seed: str = _setting("", "JSON Lines file of jobs to load at start (all or nothing)")
    state_dir: str = _setting(default_state_dir(), "folder of the development key pair")
    jwks: str = _setting("", "JWKS file with the token-signing public keys; empty = dev keys")
    jwks_reload_s: float = _setting(0.0, "re-read --jwks this often (0 = only on SIGHUP)")
    identity_endpoint: str = _setting(
        "", "identity's grpc://host:port or grpcs://host:port: verify tokens with each domain's key"
    )
    # Never shown: not in repr, not in the log.
    system_token: str = field(
        default="",
        repr=False,
        metadata={"doc": "this service's SYSTEM_TOKEN for identity calls, or @FILE holding it"},
    )
    identity_key_ttl_s: float = _setting(300.0, "how long a domain's key from identity is kept")
    timeout_s: int = _setting(
        7200, "IN_PROGRESS jobs with no update this long become TIMEOUT (0 = never)"
    )
    sweep_interval_s: int = _setting(60, "how often the sweeper (timeouts, retention) runs")
    retain_finished_days: int = _setting(
        0, "finished jobs are deleted with their tasks this many days after (0 = kept forever)"
    )
    keep_finished_per_source: int = _setting(
        0, "finished jobs kept per data source, the newest; older ones deleted (0 = no limit)"
    )
    max_page_limit: int = _setting(1000, "most results one list call returns")
    query_timeout_ms: int = _setting(10000, "time limit of one database query")
    db_timeout_ms: int = _setting(5000, "longest wait for an unreachable database")
    health_interval_s: float = _setting(5.0, "how often health checks that the database answers")
    max_in_list: int = _setting(1000, "most values in one in/not_in/contain_in/regex_in list")
    max_regex_length: int = _setting(256, "longest regex pattern accepted")
    max_stat_stages: int = _setting(32, "most aggregate stages in one stat query")
    max_receive_message_bytes: int = _setting(4 * 1024 * 1024, "largest request accepted")
    max_tasks_per_job: int = _setting(1000, "most tasks a producer's create_job may give a job")
    max_values_bytes: int = _setting(
        2048,
        "most bytes of options, changed and synced_accounts a producer stores with one job or task",
    )
    max_error_message_bytes: int = _setting(
        1024, "a task's error_message is cut to this many bytes (16 or more)"
    )
    max_reports_per_task: int = _setting(
        1000, "most start_task and report_progress calls one task takes (2 or more)"
    )
    max_concurrent_rpcs: int = _setting(64, "Job calls served at once; more get RESOURCE_EXHAUSTED")
    max_connections: int = _setting(
        2000, "connections each port (gRPC, HTTP) holds at once; more are closed"
    )
    max_streams_per_connection: int = _setting(
        1000, "calls and streams one connection carries at once"
    )
    handshake_timeout_s: float = _setting(
        10.0,
        "a connection that has not said hello (HTTP/2, TLS) within this long is closed; over"
        " HTTP, one whose request head or body takes longer too",
    )
    idle_connection_s: float = _setting(
        300.0, "a connection without calls for this long is asked to go (GOAWAY) or, HTTP, closed"
    )
    health_port: int = _setting(
        -1, "a plaintext port serving health alone, for probes (-1 = off, 0 = any free port)"
    )
    http_port: int = _setting(
        -1, "JSON over HTTP on the documented POST paths (-1 = off, 0 = any free port)"
    )
    grace_s: float = _setting(10.0, "how long in-flight calls may finish after SIGTERM")
    watch_keepalive_s: float = _setting(15.0, "a watch stream sends a keep-alive this often")
    max_watchers: int = _setting(1000, "watch streams open at once; more get RESOURCE_EXHAUSTED")
    max_watchers_per_token: int = _setting(
        100, "watch streams open at once with one token; more get RESOURCE_EXHAUSTED"
    )
    tls_cert: str = _setting("", "PEM server certificate (with --tls-key); empty = plaintext")
    tls_key: str = _setting("", "PEM private key of --tls-cert")
    tls_client_ca: str = _setting("", "PEM CA bundle; when set, clients must present a cert")
    metrics_port: int = _setting(-1, "Prometheus metrics port (-1 = off, 0 = any free port)")
    metrics_host: str = _setting("", "address of the metrics port; empty = the --host value")
    log_level: str = _setting("INFO", "logging level: DEBUG, INFO, WARNING or ERROR")
    log_format: str = _setting("text", "log lines as text or as one JSON object each (json)")

    def __post_init__(self) -> None:
        for check in _CHECKS:
            problem = check(self)
            if problem is not None:
                raise SettingError(problem)

    @property
    def state_path(self) -> Path:
        """The state folder as a path."""
        return Path(self.state_dir)


def flag(name: str) -> str:
    """How a setting is named to a person: its flag and its variable."""
    return f"--{name.replace('_', '-')} ({env_name(name)})"


def _tls(s: Settings) -> str | None:
    if (s.tls_key or s.tls_client_ca) and not s.tls_cert:
        given = flag("tls_key") if s.tls_key else flag("tls_client_ca")
        return f"{given} is set but {flag('tls_cert')} is not: TLS needs a certificate"
    if s.tls_cert and not s.tls_key:
        return f"{flag('tls_cert')} needs {flag('tls_key')}"
    return None


def _keys(s: Settings) -> str | None:
    if s.identity_endpoint and s.jwks:
        return f"{flag('identity_endpoint')} and {flag('jwks')} are two key sources: choose one"
    if s.identity_endpoint and not s.identity_endpoint.startswith(("grpc://", "grpcs://")):
        return f"{flag('identity_endpoint')} is grpc://host:port or grpcs://host:port"
    if s.identity_endpoint and not s.system_token:
        return f"{flag('identity_endpoint')} needs {flag('system_token')} to call identity with"
    if s.jwks_reload_s < 0:
        return f"{flag('jwks_reload_s')} is 0 (off) or more seconds; got {s.jwks_reload_s}"
    return None


def _positive(*names: str) -> Callable[[Settings], str | None]:
    def check(s: Settings) -> str | None:
        for name in names:
            if getattr(s, name) <= 0:
                return f"{flag(name)} must be greater than 0; got {getattr(s, name)}"
        return None

    return check


def _choices(s: Settings) -> str | None:
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        return f"{flag('log_level')} is DEBUG, INFO, WARNING or ERROR; got {s.log_level!r}"
    if s.log_format not in LOG_FORMATS:
        return f"{flag('log_format')} is text or json; got {s.log_format!r}"
    return None


# The longest retention: its TTL index (a day past it) within MongoDB's expireAfterSeconds, an
# int32.
MAX_RETAIN_DAYS = (2**31 - 1) // 86400 - 1


def _ranges(s: Settings) -> str | None:
    if not 0 <= s.port <= 65535:
        return f"{flag('port')} is 0 to 65535; got {s.port}"
    for name in ("metrics_port", "health_port", "http_port"):
        if not -1 <= getattr(s, name) <= 65535:
            return f"{flag(name)} is -1 (off) or 0 to 65535; got {getattr(s, name)}"
    if s.timeout_s < 0:
        return f"{flag('timeout_s')} is 0 (never) or more seconds; got {s.timeout_s}"
    for name in ("retain_finished_days", "keep_finished_per_source"):
        if getattr(s, name) < 0:
            return f"{flag(name)} is 0 (off) or more; got {getattr(s, name)}"
    if s.retain_finished_days > MAX_RETAIN_DAYS:
        return (
            f"{flag('retain_finished_days')} is at most {MAX_RETAIN_DAYS} (MongoDB's longest TTL);"
            f" got {s.retain_finished_days}"
        )
    if s.max_error_message_bytes < 16:
        return f"{flag('max_error_message_bytes')} is 16 or more; got {s.max_error_message_bytes}"
    if s.max_reports_per_task < 2:
        return f"{flag('max_reports_per_task')} is 2 or more; got {s.max_reports_per_task}"
    return None


_CHECKS: tuple[Callable[[Settings], str | None], ...] = (
    _tls,
    _keys,
    _choices,
    _ranges,
    _positive(
        "sweep_interval_s",
        "health_interval_s",
        "max_page_limit",
        "query_timeout_ms",
        "db_timeout_ms",
        "max_in_list",
        "max_regex_length",
        "max_stat_stages",
        "max_receive_message_bytes",
        "max_concurrent_rpcs",
        "max_connections",
        "max_streams_per_connection",
        "handshake_timeout_s",
        "idle_connection_s",
        "max_tasks_per_job",
        "max_watchers",
        "max_watchers_per_token",
        "max_values_bytes",
        "identity_key_ttl_s",
        "watch_keepalive_s",
    ),
)


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The fields of :class:`Settings`, in declaration order."""
    return dataclasses.fields(Settings)


def env_name(name: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + name.upper()


def from_sources(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags (``None`` = not given) over ``SPACEONE_JOB_*`` variables."""
    env = os.environ if environ is None else environ
    _refuse_unknown_variables(env)
    values: dict[str, Any] = {}
    for f in setting_fields():
        if flags.get(f.name) is not None:
            values[f.name] = flags[f.name]
        elif env_name(f.name) in env:
            try:
                values[f.name] = converter(f)(env[env_name(f.name)])
            except ValueError as exc:
                raise SettingError(
                    f"{env_name(f.name)} is not a valid {type(f.default).__name__}:"
                    f" {env[env_name(f.name)]!r}"
                ) from exc
    return Settings(**values)


def _refuse_unknown_variables(env: Mapping[str, str]) -> None:
    """A mistyped variable would silently leave its setting at the default (an in-memory store
    instead of MongoDB, say): refuse it, naming the nearest known one."""
    known = [env_name(f.name) for f in setting_fields()]
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known and name not in OTHER_VARIABLES:
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {nearest[0]}?" if nearest else ""
            raise SettingError(f"unknown variable {name}{hint}")
