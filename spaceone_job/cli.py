"""``spaceone-job``: ``serve`` the API, mint a development ``token``; ``--version``, ``--help``."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from spaceone_job import auth, config
from spaceone_job.app import JOB_SERVICE, App, version
from spaceone_job.config import Settings
from spaceone_job.seed import SeedError
from spaceone_job.store.store import EMBEDDED_DESCRIPTION


def _serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the Job API",
        description="Serve spaceone.api.cost_analysis.v1.Job. Every flag also reads from "
        "SPACEONE_JOB_<NAME> (e.g. SPACEONE_JOB_MONGODB_URI).",
    )
    for f in config.setting_fields():
        serve.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(f.default),
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['doc']} [env {config.env_name(f.name)}, default {f.default!r}]",
        )


def _token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token", help="print a development token that a dev-mode server accepts"
    )
    token.add_argument("--domain-id", required=True)
    token.add_argument("--workspace-id")
    token.add_argument(
        "--role",
        default=auth.DOMAIN_ADMIN,
        choices=sorted(auth.ALLOWED_ROLES),
        help="role claim (rol); workspace roles need --workspace-id",
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.add_argument("--state-dir", default=Settings.state_dir, help="the server's state folder")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(
        prog="spaceone-job", description="The SpaceONE cost-analysis Job API as a gRPC service."
    )
    top.add_argument("--version", action="version", version=f"spaceone-job {version()}")
    commands = top.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    _token_parser(commands)
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


def _banner(app: App, port: int) -> str:
    """How to call a development server: a token and grpcurl lines that work as printed."""
    private_key = app.keys.dev_private_key
    if private_key is None:
        return ""
    sample = app.store.find_one({"status": "IN_PROGRESS"}) or app.store.find_one({}) or {}
    domain_id = sample.get("domain_id", "domain-demo")
    job_id = sample.get("job_id", "job-000000000000")
    token = auth.mint_token(private_key, domain_id=domain_id, ttl_s=12 * 3600)
    tool = _command("grpcurl")
    address = f"localhost:{port}"
    body = shlex.quote(json.dumps({"job_id": job_id}))
    call = f"{tool} -plaintext -H {shlex.quote('token: ' + token)}"
    lines = [
        "",
        f"Development mode: DOMAIN_ADMIN token for {domain_id} (valid 12 h):",
        f"  {token}",
        "",
        "Try it:",
        f"  {tool} -plaintext {address} list",
        f"  {tool} -plaintext {address} describe {JOB_SERVICE}",
        f"  {call} -d {body} {address} {JOB_SERVICE}/get",
        f"  {call} -d {shlex.quote(json.dumps({'query': {'page': {'limit': 3}}}))} {address} "
        f"{JOB_SERVICE}/list",
        f"  {call} -d {body} {address} {JOB_SERVICE}/cancel",
        "",
        f"More tokens: {_command('spaceone-job')} token --domain-id D"
        " [--workspace-id W --role WORKSPACE_OWNER]",
        "",
    ]
    return "\n".join(lines)


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM or SIGINT, then drain and exit 0."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = App(settings)
    try:
        seeded = app.prepare_store()
    except (SeedError, OSError) as exc:
        print(f"spaceone-job: cannot load seed: {exc}", file=sys.stderr)
        return 2
    if app.store.description == EMBEDDED_DESCRIPTION:
        logging.getLogger(__name__).warning(
            "store: %s; %d job(s) seeded", EMBEDDED_DESCRIPTION, seeded
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    port = app.start()
    print(_banner(app, port), flush=True)
    stop.wait()
    logging.getLogger(__name__).info("stopping: draining for up to %.1f s", settings.grace_s)
    app.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spaceone-job`` command."""
    args = parser().parse_args(argv)
    if args.command == "token":
        keys = auth.dev_keys(Path(args.state_dir))
        print(
            auth.mint_token(
                keys.private_key,
                domain_id=args.domain_id,
                workspace_id=args.workspace_id,
                role=args.role,
                ttl_s=args.ttl,
            )
        )
        return 0
    flags = {f.name: getattr(args, f.name) for f in config.setting_fields()}
    return serve(config.from_sources(flags))


if __name__ == "__main__":
    sys.exit(main())
