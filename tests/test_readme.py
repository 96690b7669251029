"""The README is a promise: its settings table, its TLS recipe and its seed example work as
written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth, config, seed
from spaceone_job.app import App
from spaceone_job.config import Settings
from spaceone_job.store.protocol import Store

from .conftest import NOW, Clock, Serve
from .support.readme import code_blocks, section
from .support.tools import GRPCURL

pytestmark = pytest.mark.only_on(
    "embedded", why="the README's commands against the embedded store that make run serves"
)


def test_the_settings_table_lists_every_setting_as_it_is(repo: Path) -> None:
    rows = {}
    for line in section(repo, "Configuration").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`--"):
            rows[cells[0].strip("`")] = cells[1:]
    assert len(rows) == len(config.setting_fields())
    for f in config.setting_fields():
        env, default, doc = rows[f"--{f.name.replace('_', '-')}"]
        assert env == f"`{config.env_name(f.name)}`"
        assert doc == f.metadata["doc"]
        if f.name == "state_dir":
            assert default == "per-user folder"
        elif f.default == "":
            assert default == "empty"
        else:
            shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
            assert default == f"`{shown}`"


def test_the_tls_recipe_works_as_written(repo: Path, tmp_path: Path, serve: Serve) -> None:
    (recipe,) = code_blocks(section(repo, "TLS"))
    lines = recipe.strip().splitlines()
    making = "\n".join(lines[: lines.index("cd ..") + 1]).replace("\\\n", "")
    done = subprocess.run(["bash", "-c", making], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    serve_line, call_line = lines[-2], lines[-1]
    flags = dict(re.findall(r"--(tls-[a-z-]+) (\S+)", serve_line))
    live = serve(
        host="localhost",
        tls_cert=str(tmp_path / flags["tls-cert"]),
        tls_key=str(tmp_path / flags["tls-key"]),
        tls_client_ca=str(tmp_path / flags["tls-client-ca"]),
    )
    command = call_line.replace(".venv/bin/grpcurl", GRPCURL).replace(
        "localhost:50051", f"localhost:{live.port}"
    )
    called = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert called.returncode == 0, called.stderr
    assert "spaceone.api.cost_analysis.v1.Job" in called.stdout


def test_the_seed_example_loads(repo: Path, tmp_path: Path, store: Store, tasks: Store) -> None:
    job, task = (b for b in code_blocks(section(repo, "Seed files")) if b.startswith("{"))
    path = tmp_path / "seed.jsonl"
    path.write_text(job + task)
    assert seed.load(store, tasks, path, NOW) == (1, 1)
    stored = store.find_one({"job_id": json.loads(job)["job_id"]})
    assert stored is not None and stored["status"] == "SUCCESS"
    stored_task = tasks.find_one({"job_task_id": json.loads(task)["job_task_id"]})
    assert stored_task is not None and stored_task["created_count"] == 1520


def test_seeded_jobs_older_than_the_timeout_are_timed_out_at_start(
    store: Store, tmp_path: Path, clock: Clock, dev_keys: auth.DevKeys
) -> None:
    old = (NOW - timedelta(hours=3)).isoformat() + "Z"
    line = {"job_id": "job-000000000001", "domain_id": "d", "data_source_id": "ds"}
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps({**line, "created_at": old, "updated_at": old}) + "\n")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        seed=str(path),
        timeout_s=3600,
        state_dir=str(dev_keys.jwks.parent),
    )
    app = App(settings, store=store, clock=clock)
    app.prepare_store()  # as serve does: seed first, then start
    app.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = store.find_one({"job_id": "job-000000000001"})
            if found is not None and found["status"] == "TIMEOUT":
                return
            time.sleep(0.05)
        pytest.fail("the seeded job was not timed out at start")
    finally:
        app.stop(0)


def test_the_python_client_recipe_works_as_written(repo: Path, tmp_path: Path) -> None:
    (recipe,) = code_blocks(section(repo, "Generating clients"))
    commands = [line for line in recipe.strip().splitlines() if not line.startswith("pip ")]
    script = "\n".join(commands).replace("python ", f"{sys.executable} ")
    shutil.copytree(repo / "proto", tmp_path / "proto")
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    generated = tmp_path / "gen" / "spaceone" / "api" / "cost_analysis" / "v1"
    assert {"job_pb2.py", "job_task_pb2_grpc.py", "job_pb2.pyi"} <= {
        p.name for p in generated.iterdir()
    }


def run_recipe(
    repo: Path, tmp_path: Path, serve: Serve, title: str
) -> subprocess.CompletedProcess[str]:
    """The shell block of the README section ``title``, run as written against a server, with
    a token in ``$TOKEN`` as ``make run`` prints it."""
    live = serve()
    keys = auth.dev_keys(Path(live.app.settings.state_dir))
    token = auth.mint_token(keys.private_key, domain_id="domain-readme0000")
    (recipe,) = code_blocks(section(repo, title))
    bin_dir = str(Path(sys.executable).parent) + "/"
    script = f"TOKEN={token}\n" + recipe.replace(".venv/bin/", bin_dir).replace(
        "localhost:50051", f"127.0.0.1:{live.port}"
    )
    return subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_the_producing_recipe_works_as_written(repo: Path, tmp_path: Path, serve: Serve) -> None:
    done = run_recipe(repo, tmp_path, serve, "Producing jobs")
    # The script's status is wait's: the watch command's, 0 only for SUCCESS.
    assert done.returncode == 0, done.stderr
    assert "SUCCESS" in done.stdout.splitlines()
    assert '"created_count": 120' in done.stdout


def test_the_trail_recipe_works_as_written(repo: Path, tmp_path: Path, serve: Serve) -> None:
    done = run_recipe(repo, tmp_path, serve, "The event trail")
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    assert [e["type"] for e in events] == ["created", "canceled", "task_canceled"]
    assert events[1]["by"] == "user:dev-user"


def test_the_list_watch_line_works_as_written(repo: Path, serve: Serve) -> None:
    live = serve()
    keys = auth.dev_keys(Path(live.app.settings.state_dir))
    token = auth.mint_token(keys.private_key, domain_id="domain-readme0000")
    (line,) = code_blocks(section(repo, "Watching a data source's jobs"))
    source = re.search(r'"data_source_id": "(ds-\w+)"', line)
    assert source is not None
    made = producer_pb2_grpc.ProducerStub(live.channel).create_job(
        producer_pb2.CreateJobRequest(request_id="r-1", data_source_id=source.group(1)),
        metadata=(("token", token),),
        timeout=10,
    )
    command = line.strip().replace(".venv/bin/grpcurl", GRPCURL)
    command = command.replace("localhost:50051", f"127.0.0.1:{live.port}")
    # The stream does not end by itself: read what it says within two seconds.
    done = subprocess.run(
        ["bash", "-c", f"TOKEN={token}\ntimeout 2 {command}"], capture_output=True, text=True
    )
    decoder, text, events = json.JSONDecoder(), done.stdout.strip(), []
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].strip()
    assert events[0]["job"]["job_id"] == made.job.job_id
    assert events[1]["listed"] == {"count": 1} and events[1]["resume_token"]
