"""``spaceone-job``: ``serve`` the API, mint a development ``token``; ``--version``, ``--help``.

A mistake in how it is started (a flag, a variable, a file) ends in one line on stderr naming
the setting and exit status 2; a port that is taken, in one line and status 1. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import grpc
import tqdm
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import auth, config, cpu, memory, observe, server
from spaceone_job.app import JOB_SERVICE, JOB_TASK_SERVICE, App, version
from spaceone_job.config import Settings
from spaceone_job.seed import SeedError
from spaceone_job.server import StartError
from spaceone_job.store.documents import StoreError, StoreUnusable
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

LOG = logging.getLogger(__name__)
BANNER_TOKEN_TTL_S = 12 * 3600


def _serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the Job API",
        description="Serve spaceone.api.cost_analysis.v1.Job. Every flag also reads from "
        "SPACEONE_JOB_<NAME> (e.g. SPACEONE_JOB_MONGODB_URI); a flag wins.",
    )
    for f in config.setting_fields():
        serve.add_argument(
            "--" + f.name.replace("_", "-"),
            type=config.converter(f),
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['doc']} [env {config.env_name(f.name)}, default {f.default!r}]",
        )


def _token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="print a development token that a dev-mode server accepts",
        description="Print a token signed with the development key that `spaceone-job serve`"
        " uses when no --jwks is set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    token.add_argument("--domain-id", help="the token's domain (did); required but with --system")
    token.add_argument(
        "--workspace-id", help="the token's workspace (wid); required for workspace roles"
    )
    token.add_argument(
        "--role",
        default=auth.DOMAIN_ADMIN,
        choices=sorted(auth.ALLOWED_ROLES),
        help="the token's role (rol)",
    )
    token.add_argument(
        "--system",
        action="store_true",
        help="a SYSTEM_TOKEN instead: callers name the tenant with x_domain_id metadata",
    )
    token.add_argument(
        "--permissions",
        nargs="+",
        default=[],
        metavar="PERMISSION",
        help="the permissions claim (prefixes such as cost-analysis:Job.read); none = all",
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.add_argument(
        "--state-dir",
        default=config.default_state_dir(),
        help="the server's state folder, where the development key lives",
    )


def _health_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = commands.add_parser(
        "health",
        help="check a server's health: exit 0 only when it answers SERVING",
        description="Call grpc.health.v1.Health/Check, as a container HEALTHCHECK does.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    health.add_argument("--service", default="", help="service name; empty = the whole server")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    _connection_options(health)


def _connection_options(command: argparse.ArgumentParser) -> None:
    port = os.environ.get(config.env_name("port"), str(Settings.port))
    command.add_argument("--address", default=f"127.0.0.1:{port}", help="host:port to call")
    command.add_argument("--cacert", help="PEM CA to verify a TLS server with; unset = plaintext")
    command.add_argument("--cert", help="PEM client certificate (mTLS, with --key)")
    command.add_argument("--key", help="PEM key of --cert")


def _watch_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser(
        "watch",
        help="follow a job until it finishes (exit 0 for SUCCESS, 1 otherwise), or a data"
        " source's jobs",
        description="Follow a job through spaceone_job.v1.Watch: a progress bar of its tasks on"
        " a terminal, one line per change otherwise. With --data-source, the data source's jobs"
        " (Watch/watch_jobs): one line per job, then one per change, until interrupted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    watch.add_argument("job_id", nargs="?", help="the job to follow")
    watch.add_argument("--data-source", help="follow this data source's jobs instead")
    watch.add_argument("--token", required=True, help="the token to call with (as grpcurl's)")
    _connection_options(watch)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(
        prog="spaceone-job", description="The SpaceONE cost-analysis Job API as a gRPC service."
    )
    top.add_argument("--version", action="version", version=f"spaceone-job {version()}")
    commands = top.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    _token_parser(commands)
    _health_parser(commands)
    _watch_parser(commands)
    return top


def _command(name: str) -> str:
    """How to run a command installed beside this Python, as short as it can be written here."""
    beside = Path(sys.executable).parent / name
    if not beside.exists():
        return name
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def _transport(settings: Settings) -> str:
    """grpcurl's flags for how this server is reached."""
    if not settings.tls_cert:
        return "-plaintext"
    ca = shlex.quote(settings.tls_client_ca or settings.tls_cert)
    mutual = " -cert client.pem -key client.key" if settings.tls_client_ca else ""
    return f"-cacert {ca}{mutual}"


def _sample(app: App) -> dict[str, str]:
    """A job to show in the examples; none while the database is down or empty."""
    try:
        found = app.store.find_one({"status": "IN_PROGRESS"}, timeout=1) or app.store.find_one(
            {}, timeout=1
        )
    except StoreError:
        return {}
    return {key: str(found[key]) for key in ("domain_id", "job_id")} if found else {}


def _curl_lines(port: int, page: str, job_id: str | None) -> list[str]:
    """The same calls as JSON over HTTP, on the documented paths."""
    call = 'curl -s -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json"'
    base = f"http://localhost:{port}/cost-analysis/v1"
    lines = ["", "Over HTTP:", f"  {call} -d {page} {base}/job/list"]
    if job_id is not None:
        body = shlex.quote(json.dumps({"job_id": job_id}))
        lines.append(f"  {call} -d {body} {base}/job/get")
    return lines


def _banner(app: App, port: int) -> str:
    """How to call a development server: a token and grpcurl lines that work as printed."""
    private_key = app.keys.dev_private_key
    if private_key is None:
        return ""
    sample = _sample(app)
    domain_id = sample.get("domain_id", "domain-demo")
    token = auth.mint_token(private_key, domain_id=domain_id, ttl_s=BANNER_TOKEN_TTL_S)
    tool, transport = _command("grpcurl"), _transport(app.settings)
    address = f"localhost:{port}"
    call = f'{tool} {transport} -H "token: $TOKEN"'
    page = shlex.quote(json.dumps({"query": {"page": {"limit": 3}}}))
    lines = [
        "",
        f"Development mode: keys in {app.settings.state_path}. A DOMAIN_ADMIN token for"
        f" {domain_id}, valid 12 h:",
        "",
        f"TOKEN={token}",
        "",
        "Try it:",
        f"  {tool} {transport} {address} list",
        f"  {tool} {transport} {address} describe {JOB_SERVICE}",
        f"  {call} -d {page} {address} {JOB_SERVICE}/list",
    ]
    if "job_id" in sample:
        body = shlex.quote(json.dumps({"job_id": sample["job_id"]}))
        lines += [
            f"  {call} -d {body} {address} {JOB_SERVICE}/get",
            f"  {call} -d {body} {address} {JOB_TASK_SERVICE}/list",
            f"  {call} -d {body} {address} {JOB_SERVICE}/cancel",
        ]
    if app.http_port is not None and not app.settings.tls_cert:
        lines += _curl_lines(app.http_port, page, sample.get("job_id"))
    if app.settings.tls_client_ca:
        lines += ["  (client.pem / client.key: a client certificate signed by that CA)"]
    state = (
        ""
        if app.settings.state_dir == config.default_state_dir()
        else f" --state-dir {shlex.quote(app.settings.state_dir)}"
    )
    lines += [
        "",
        f"More tokens: {_command('spaceone-job')} token{state} --domain-id D"
        " [--workspace-id W --role WORKSPACE_OWNER]",
        "",
    ]
    return "\n".join(lines)


# Descriptors kept for what is not a client's connection: the database's pool, identity, the
# metrics and health ports, log files.
RESERVED_FILES = 256


def _within_open_files(settings: Settings) -> Settings:
    """The soft limit of open files raised to the hard one, and the connection cap kept below
    it (a connection takes a descriptor; running out of them would refuse health checks too).
    The cap holds per port: with HTTP on, the two ports share what is left."""
    before, after = server.raise_open_files_limit()
    if after != before:
        LOG.info("open files limit raised from %d to %d", before, after)
    ports = 2 if settings.http_port >= 0 else 1
    cap = max((after - RESERVED_FILES) // ports, 1)
    if settings.max_connections <= cap:
        return settings
    LOG.warning(
        "%s lowered from %d to %d: the process may open %d files",
        config.flag("max_connections"),
        settings.max_connections,
        cap,
        after,
    )
    return dataclasses.replace(settings, max_connections=cap)


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM or SIGINT, then drain and exit 0."""
    logs = observe.configure_logging(settings.log_level, settings.log_format)
    try:
        return _serve(settings)
    finally:
        logs.close()


def _serve(settings: Settings) -> int:
    memory.few_arenas()
    cpu.share_the_interpreter()
    settings = _within_open_files(settings)
    app = App(settings)
    app.bind()
    try:
        app.prepare_store()
    except (SeedError, OSError) as exc:
        print(f"spaceone-job: cannot load seed: {exc}", file=sys.stderr)
        return 2
    stopping = asyncio.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        app.bound.loop.call_soon_threadsafe(stopping.set)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # SIGHUP reads the JWKS file again (key rotation without a restart).
    signal.signal(signal.SIGHUP, lambda signum, frame: app.reload_keys())
    try:
        app.bound.run(_until_stopped(app, stopping))
    finally:
        app.release()
    LOG.info("stopped")
    return 0


async def _until_stopped(app: App, stopping: asyncio.Event) -> None:
    """Serve, on the server's loop, until ``stopping`` is set; then drain and stop."""
    async with app:
        print(await asyncio.to_thread(_banner, app, app.bound.port), flush=True)
        await stopping.wait()
        LOG.info("stopping: health NOT_SERVING, draining for up to %.1f s", app.settings.grace_s)


def _token(args: argparse.Namespace) -> str:
    if args.ttl <= 0:
        raise config.SettingError(f"--ttl must be greater than 0; got {args.ttl}")
    if not args.system and not (args.domain_id or "").strip():
        raise config.SettingError("--domain-id is required (or --system for a system token)")
    workspace_role = args.role in (auth.WORKSPACE_OWNER, auth.WORKSPACE_MEMBER)
    if workspace_role and not args.system and not (args.workspace_id or "").strip():
        raise config.SettingError(f"--role {args.role} needs --workspace-id")
    keys = auth.dev_keys(Path(args.state_dir))
    return auth.mint_token(
        keys.private_key,
        domain_id=(args.domain_id or "domain-root").strip(),
        workspace_id=args.workspace_id,
        role=auth.SYSTEM_TOKEN if args.system else args.role,
        kind=auth.SYSTEM_TOKEN if args.system else "ACCESS_TOKEN",
        ttl_s=args.ttl,
        permissions=args.permissions,
    )


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if not args.cacert:
        return grpc.insecure_channel(args.address)
    try:
        read = {
            name: Path(getattr(args, name)).read_bytes() if getattr(args, name) else None
            for name in ("cacert", "cert", "key")
        }
    except OSError as exc:
        raise config.SettingError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    credentials = grpc.ssl_channel_credentials(read["cacert"], read["key"], read["cert"])
    return grpc.secure_channel(args.address, credentials)


def _health(args: argparse.Namespace) -> int:
    """0 when the server answers SERVING; 1 (and one line) otherwise."""
    with _channel(args) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"spaceone-job: health: {error.code().name} from {args.address}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(status)
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


def _job_line(job: job_pb2.JobInfo, mark: str = "") -> str:
    status = job_pb2.JobInfo.Status.Name(job.status)
    done = job.total_tasks - job.remained_tasks
    return f"{job.updated_at} {job.job_id} {status} {done}/{job.total_tasks} tasks{mark}"


def _watch_source(args: argparse.Namespace) -> int:
    """Follow a data source's jobs, a line each, until interrupted (0) or the stream breaks
    (1)."""
    with _channel(args) as channel:
        stub = producer_pb2_grpc.WatchStub(channel)
        request = producer_pb2.WatchJobsRequest(data_source_id=args.data_source)
        try:
            for event in stub.watch_jobs(request, metadata=(("token", args.token),)):
                kind = event.WhichOneof("event")
                if kind == "job":
                    print(_job_line(event.job), flush=True)
                elif kind == "gone":
                    print(_job_line(event.gone, " (gone)"), flush=True)
                elif kind == "listed":
                    print(
                        f"{event.listed.count} job(s) of {args.data_source}; changes:", flush=True
                    )
        except grpc.RpcError as error:
            print(f"spaceone-job: watch: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
    return 1


def _watch(args: argparse.Namespace) -> int:
    """Follow a job; 0 when it ends SUCCESS, 1 otherwise (or when the stream breaks)."""
    if args.data_source:
        return _watch_source(args)
    if not args.job_id:
        raise config.SettingError("watch needs a job id, or --data-source")
    terminal = sys.stdout.isatty()
    status = "UNKNOWN"
    with (
        _channel(args) as channel,
        tqdm.tqdm(disable=not terminal, unit="task", dynamic_ncols=True) as bar,
    ):
        stub = producer_pb2_grpc.WatchStub(channel)
        request = producer_pb2.WatchRequest(job_id=args.job_id)
        try:
            for event in stub.watch(request, metadata=(("token", args.token),)):
                if not event.HasField("job"):
                    continue
                job = event.job
                status = job_pb2.JobInfo.Status.Name(job.status)
                if terminal:
                    bar.total = job.total_tasks
                    bar.n = job.total_tasks - job.remained_tasks
                    bar.set_description(f"{job.job_id} {status}")
                    bar.refresh()
                else:
                    print(_job_line(job))
        except grpc.RpcError as error:
            print(f"spaceone-job: watch: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    print(status)
    return 0 if status == "SUCCESS" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spaceone-job`` command."""
    args = parser().parse_args(argv)
    try:
        if args.command == "token":
            print(_token(args))
            return 0
        if args.command == "health":
            return _health(args)
        if args.command == "watch":
            return _watch(args)
        flags = {f.name: getattr(args, f.name) for f in config.setting_fields()}
        return serve(config.from_sources(flags))
    except config.SettingError as exc:
        print(f"spaceone-job: {exc}", file=sys.stderr)
        return 2
    except (StartError, StoreUnusable) as exc:
        print(f"spaceone-job: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
