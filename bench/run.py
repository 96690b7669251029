"""``make bench``: our server against the Python gRPC ceiling, at 1,000 and 10,000 jobs.

For each size it seeds the embedded store, starts ``spaceone-job serve`` in its own process,
records our answer to every scenario, starts the ceiling (a bare grpcio servicer answering those
same bytes), and drives both from a separate client process at concurrency 1 and 8. At the first
size it then serves the same jobs from a store of canned answers (``bench/canned.py``) to show the
service's own cost per call. Then it runs the rendering micro-benchmark and prints the report,
with ``bench/reading.md`` (how to read it) at its end; ``--record`` writes it to
``bench/RESULTS.md``, with the RPS of the report it replaces beside each row.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import platform
import random
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import sections
from google.protobuf import json_format
from google.protobuf.internal import api_implementation
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DOMAIN, OTHER = "domain-58010aa2e451", "domain-3c9d0e7f1a22"
SOURCES = [f"ds-{i:012x}" for i in range(1, 7)]
SIZES = tuple(int(n) for n in os.environ.get("BENCH_SIZES", "1000,10000").split(","))
CONCURRENCY = (1, 8)
SECONDS = float(os.environ.get("BENCH_SECONDS", "1"))
# Each cell runs this many times, the server and its ceiling taking turns; the best run of each
# is kept, so that a moment of interference from the shared machine skews neither side.
ROUNDS = 3
THREADS = 64 + 8  # our default: --max-concurrent-rpcs 64 plus the refusing threads
# The scenarios run again on a server whose store answers from memory (bench/canned.py).
CANNED = ("get", "list 20", "list, 3 conditions, 50", "stat status x month")
# The scenarios run again as JSON over HTTP, on the same server.
OVER_HTTP = ("get", "list 20")
Results = dict[tuple[str, int], dict[str, Any]]


def seed_jobs(n: int, now: datetime) -> list[dict[str, Any]]:
    """``n`` jobs in JobInfo JSON form: 90 % ours, 15 % running, six months of history."""
    rng = random.Random(n)
    jobs = []
    for i in range(n):
        created = now - timedelta(minutes=rng.randint(1, 182 * 24 * 60))
        running = rng.random() < 0.15
        status = "IN_PROGRESS" if running else rng.choice(["SUCCESS"] * 8 + ["FAILURE", "CANCELED"])
        job: dict[str, Any] = {
            "job_id": f"job-{i:012x}",
            "status": status,
            "domain_id": DOMAIN if rng.random() < 0.9 else OTHER,
            "workspace_id": rng.choice(["ws-000000000001", "ws-000000000002", "*"]),
            "data_source_id": rng.choice(SOURCES),
            "resource_group": "WORKSPACE",
            "total_tasks": rng.randint(1, 4),
            "remained_tasks": 0,
            "options": {"no_preload_cache": False, "start": None, "sync_mode": "SCHEDULED"},
            "changed": [{"start": created.strftime("%Y-%m")}],
            "synced_accounts": [{"account_id": f"{rng.getrandbits(40):012d}"}],
            "created_at": created.isoformat() + "Z",
            # Running jobs were just updated, so the timeout sweeper leaves them running.
            "updated_at": (now if running else created + timedelta(minutes=3)).isoformat() + "Z",
        }
        if not running:
            job["finished_at"] = job["updated_at"]
        jobs.append(job)
    return jobs


def scenarios(jobs: list[dict[str, Any]]) -> dict[str, tuple[str, list[Any]]]:
    """Scenario name -> (method, requests to cycle through)."""
    mine = [j for j in jobs if j["domain_id"] == DOMAIN]
    finished = [j["job_id"] for j in mine if j["status"] != "IN_PROGRESS"][:500]
    running = [j["job_id"] for j in mine if j["status"] == "IN_PROGRESS"]

    def query(body: dict[str, Any]) -> Any:
        return json_format.ParseDict(body, job_pb2.JobQuery())

    stat = json_format.ParseDict(
        {
            "query": {
                "aggregate": [
                    {
                        "group": {
                            "keys": [
                                {"key": "status", "name": "status"},
                                {"key": "created_at", "name": "month", "date_format": "%Y-%m"},
                            ],
                            "fields": [
                                {"name": "jobs", "operator": "count"},
                                {
                                    "name": "multi_task",
                                    "operator": "count",
                                    "conditions": [
                                        {"key": "total_tasks", "operator": "gte", "value": 2}
                                    ],
                                },
                            ],
                        }
                    },
                    {"sort": [{"key": "month"}, {"key": "status"}]},
                ]
            }
        },
        job_pb2.JobStatQuery(),
    )

    def three_conditions(limit: int) -> Any:
        conditions = [
            {"k": "status", "o": "in", "v": ["SUCCESS", "FAILURE"]},
            {"k": "created_at", "o": "timediff_gte", "v": "now-90d"},
            {"k": "data_source_id", "o": "eq", "v": SOURCES[0]},
        ]
        return query({"query": {"filter": conditions, "page": {"limit": limit}}})

    return {
        "get": ("get", [job_pb2.JobRequest(job_id=j) for j in finished]),
        "list 20": ("list", [query({"query": {"page": {"limit": 20}}})]),
        "list 100": ("list", [query({"query": {"page": {"limit": 100}}})]),
        "list 1000": ("list", [query({"query": {"page": {"limit": 1000}}})]),
        "list, 3 conditions": ("list", [three_conditions(20)]),
        "list, 3 conditions, 50": ("list", [three_conditions(50)]),
        "stat status x month": ("stat", [stat]),
        # Last: it changes the data. Each running job is canceled once, then calls repeat.
        "cancel": ("cancel", [job_pb2.JobRequest(job_id=j) for j in running]),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(target: str) -> None:
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=300)
    channel.close()


def drive_turns(
    targets: list[str], method: str, requests: Path, token: str, concurrency: int
) -> list[dict[str, Any]]:
    """The best of ROUNDS runs against each target, the targets taking turns. ``cancel``
    changes the jobs as it runs, so it runs once, for as long as the rounds would."""
    rounds, seconds = (1, ROUNDS * SECONDS) if method == "cancel" else (ROUNDS, SECONDS)
    runs: list[list[dict[str, Any]]] = [[] for _ in targets]
    for _ in range(rounds):
        for target, kept in zip(targets, runs, strict=True):
            kept.append(drive(target, method, requests, token, concurrency, seconds))
    return [max(kept, key=lambda run: float(run["rps"])) for kept in runs]


def drive(
    target: str, method: str, requests: Path, token: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "drive.py"),
            f"--target={target}",
            f"--method={method}",
            f"--requests={requests}",
            f"--token={token}",
            f"--concurrency={concurrency}",
            f"--seconds={seconds}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def bench_size(n: int, work: Path, first: bool) -> tuple[Results, Results, Results]:
    """Every scenario at both concurrencies, ours and the ceiling's; at the ``first`` size,
    also the scenarios of OVER_HTTP over gRPC and HTTP in turns on the same server, and the
    server on a store of canned answers (:mod:`canned`) in the scenarios of CANNED."""
    now = datetime.now(UTC).replace(tzinfo=None)
    jobs = seed_jobs(n, now)
    seed_file = work / f"seed-{n}.jsonl"
    seed_file.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    state = work / "state"
    port, ceiling_port, http_port = free_port(), free_port(), free_port()
    serve = [str(BIN / "spaceone-job"), "serve", "--host=127.0.0.1", f"--port={port}"]
    ours = start(
        [*serve, f"--seed={seed_file}", f"--state-dir={state}", f"--http-port={http_port}"],
        work / f"server-{n}.log",
    )
    ceiling = None
    try:
        wait_ready(f"127.0.0.1:{port}")
        token = subprocess.run(
            [str(BIN / "spaceone-job"), "token", f"--domain-id={DOMAIN}", f"--state-dir={state}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        plan = scenarios(jobs)
        stub = job_pb2_grpc.JobStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        responses: dict[tuple[str, bytes], Any] = {}
        files: dict[str, Path] = {}
        for name, (method, requests) in plan.items():
            files[name] = work / f"{name.replace(' ', '_').replace(',', '')}-{n}.pickle"
            files[name].write_bytes(pickle.dumps(requests))
            if method != "cancel":
                for request in requests[:50]:
                    answer = getattr(stub, method)(
                        request, metadata=(("token", token),), timeout=30
                    )
                    responses[(method, request.SerializeToString())] = answer
        cancel_sample = job_pb2.JobInfo()
        cancel_sample.CopyFrom(responses[("get", plan["get"][1][0].SerializeToString())])
        cancel_sample.status = job_pb2.JobInfo.CANCELED
        responses[("cancel", b"")] = cancel_sample
        (work / "responses.pickle").write_bytes(pickle.dumps(responses))
        ceiling_command = [
            sys.executable,
            str(HERE / "ceiling.py"),
            f"--port={ceiling_port}",
            f"--responses={work / 'responses.pickle'}",
            f"--threads={THREADS}",
        ]
        ceiling = start(ceiling_command, work / "ceiling.log")
        wait_ready(f"127.0.0.1:{ceiling_port}")
        results: Results = {}
        chosen = os.environ.get("BENCH_ONLY", "")
        for name, (method, _) in plan.items():
            if chosen and name not in chosen.split(";"):
                continue
            for concurrency in CONCURRENCY:
                mine, bare = drive_turns(
                    [f"127.0.0.1:{port}", f"127.0.0.1:{ceiling_port}"],
                    method,
                    files[name],
                    token,
                    concurrency,
                )
                results[(name, concurrency)] = {"ours": mine, "ceiling": bare}
                print(
                    f"{n:>6} jobs  {name:<22} c={concurrency}  {mine['rps']:8.0f} rps "
                    f"(ceiling {bare['rps']:8.0f})",
                    flush=True,
                )
        over_http: Results = {}
        for name, concurrency in itertools.product(OVER_HTTP if first else (), CONCURRENCY):
            method = plan[name][0]
            grpc_run, http_run = drive_turns(
                [f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}"],
                method,
                files[name],
                token,
                concurrency,
            )
            over_http[(name, concurrency)] = {"grpc": grpc_run, "http": http_run}
            print(
                f"http    {name:<22} c={concurrency}  {http_run['rps']:8.0f} rps "
                f"(gRPC {grpc_run['rps']:8.0f})",
                flush=True,
            )
        canned_results: Results = {}
        if first:
            ours.terminate()
            ours.wait(30)
            ceiling.terminate()
            ceiling.wait(30)
            ceiling = start([*ceiling_command, "--shape=aio"], work / "ceiling-aio.log")
            wait_ready(f"127.0.0.1:{ceiling_port}")
            ours = start(
                [
                    sys.executable,
                    str(HERE / "canned.py"),
                    f"--port={port}",
                    f"--seed={seed_file}",
                    f"--state-dir={state}",
                ],
                work / "canned.log",
            )
            wait_ready(f"127.0.0.1:{port}")
            for name, concurrency in itertools.product(CANNED, CONCURRENCY):
                if (name, concurrency) in results:
                    method = plan[name][0]
                    mine, shaped = drive_turns(
                        [f"127.0.0.1:{port}", f"127.0.0.1:{ceiling_port}"],
                        method,
                        files[name],
                        token,
                        concurrency,
                    )
                    bare = results[(name, concurrency)]["ceiling"]
                    canned_results[(name, concurrency)] = {
                        "ours": mine,
                        "ceiling": bare,
                        "shaped": shaped,
                    }
                    print(
                        f"canned  {name:<22} c={concurrency}  {mine['rps']:8.0f} rps "
                        f"(ceiling of our shape {shaped['rps']:8.0f})",
                        flush=True,
                    )
        return results, canned_results, over_http
    finally:
        for process in (ours, ceiling):
            if process is not None:
                process.terminate()
                process.wait(30)


def machine() -> str:
    import google.protobuf

    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, protobuf {google.protobuf.__version__} "
        f"({api_implementation.Type()} backend), {platform.system()} {platform.release()}"
    )


def rps(value: float) -> str:
    """Requests per second as the report shows them: a decimal below 10."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def recorded(path: Path) -> dict[tuple[str, str, str], tuple[float, float]]:
    """The RPS and ceiling RPS of each (scenario, concurrency, jobs) row of a report written
    before."""
    rows: dict[tuple[str, str, str], tuple[float, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if len(cells) >= 7 and cells[1].isdigit():
                try:
                    rows[(cells[0], cells[1], cells[2])] = (float(cells[3]), float(cells[6]))
                except ValueError:  # not a row of the first table
                    continue
    return rows


def report(results: dict[int, Results], canned: Results, over_http: Results, render: str) -> str:
    small, large = SIZES
    before = recorded(HERE / "RESULTS.md")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        f"Each cell: the best of {ROUNDS} runs of {SECONDS:g} s of back-to-back calls from one"
        " client",
        "process (threads = concurrency), the server and its ceiling taking turns; server and",
        "client share the machine's cores. Ceiling: a bare grpcio servicer returning our own",
        "recorded responses (same bytes), same thread-pool size.",
        "Before: the RPS in the report this one replaced (same scenario, size and concurrency).",
        "Change: the share of the ceiling now over the share then; both runs measured against",
        "their ceiling in the same minutes, so the machine's own swings (here up to 2x from one",
        "run to the next) cancel out.",
        "",
        "## The embedded store",
        "",
        "| scenario | conc. | jobs | RPS | p50 ms | p99 ms | ceiling RPS | % of ceiling"
        " | RPS at 10k / 1k | before | change |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, concurrency in results[small]:
        for n in SIZES:
            cell = results[n][(name, concurrency)]
            ours, ceiling = cell["ours"], cell["ceiling"]
            growth = (
                results[large][(name, concurrency)]["ours"]["rps"]
                / results[small][(name, concurrency)]["ours"]["rps"]
            )
            old, old_ceiling = before.get((name, str(concurrency), f"{n:,}"), (0.0, 0.0))
            share = ours["rps"] / ceiling["rps"]
            change = f"{share / (old / old_ceiling):.2f}x" if old else "new"
            lines.append(
                f"| {name} | {concurrency} | {n:,} | {rps(ours['rps'])} | {ours['p50_ms']:.2f} | "
                f"{ours['p99_ms']:.2f} | {rps(ceiling['rps'])} | "
                f"{100 * ours['rps'] / ceiling['rps']:.0f} % | "
                f"{growth:.2f} | {rps(old) if old else '-'} | {change} |"
                + (f" errors: {ours['errors']}" if ours["errors"] else "")
            )
    get_share = (
        results[small][("get", 1)]["ours"]["rps"] / results[small][("get", 1)]["ceiling"]["rps"]
    )
    lines += [
        "",
        "**Target `get` >= 60 % of the ceiling at 1,000 jobs (concurrency 1):"
        f" {100 * get_share:.0f} %.**",
        "",
        "## The service's own cost: a store with canned answers",
        "",
        f"The same server at {small:,} jobs, its store answering each query with rows computed"
        " once",
        "(`bench/canned.py`): tokens, the call gate, compiling, the service's rules, rendering,",
        "logging, metrics and gRPC remain, the query does not. Beside the ceiling, the ceiling of",
        "our server's shape: the same bare handlers on an asyncio server, `get` on its event",
        "loop and the others on a thread pool (the shape that lets watch streams wait without a",
        "thread; `bench/ceiling.py --shape aio`).",
        "Service cost: microseconds per call beyond that shape's, at concurrency 1.",
        "",
        "| scenario | conc. | RPS | p50 ms | ceiling RPS | % of ceiling | ceiling of our shape"
        " | % of it | service cost µs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, concurrency), cell in canned.items():
        ours, ceiling, shaped = cell["ours"], cell["ceiling"], cell["shaped"]
        cost = f"{1e6 / ours['rps'] - 1e6 / shaped['rps']:.0f}" if concurrency == 1 else ""
        lines.append(
            f"| {name} | {concurrency} | {rps(ours['rps'])} | {ours['p50_ms']:.2f} | "
            f"{rps(ceiling['rps'])} | {100 * ours['rps'] / ceiling['rps']:.0f} % | "
            f"{rps(shaped['rps'])} | {100 * ours['rps'] / shaped['rps']:.0f} % | {cost} |"
        )
    lines += [
        "",
        "## JSON over HTTP",
        "",
        f"The same server at {small:,} jobs, the same requests as JSON bodies on the documented",
        "paths (`POST /cost-analysis/v1/job/get`, ...), from the same driver: a keep-alive",
        "connection per client thread (`http.client`), gRPC and HTTP taking turns. Both clients",
        "are Python in one process, so the ratio compares the two fronts at equal client cost.",
        "",
        "| scenario | conc. | gRPC RPS | HTTP RPS | HTTP / gRPC | HTTP p50 ms | HTTP p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, concurrency), cell in over_http.items():
        over_grpc, over = cell["grpc"], cell["http"]
        lines.append(
            f"| {name} | {concurrency} | {rps(over_grpc['rps'])} | {rps(over['rps'])} | "
            f"{100 * over['rps'] / over_grpc['rps']:.0f} % | {over['p50_ms']:.2f} | "
            f"{over['p99_ms']:.2f} |" + (f" errors: {over['errors']}" if over["errors"] else "")
        )
    http_get = over_http[("get", 1)]
    lines += [
        "",
        "**Target HTTP `get` >= 50 % of gRPC `get` (concurrency 1):"
        f" {100 * http_get['http']['rps'] / http_get['grpc']['rps']:.0f} %.**",
    ]
    lines += ["", render, "", (HERE / "reading.md").read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every scenario; print the report, and record it in bench/RESULTS.md with --record."""
    results: dict[int, Results] = {}
    canned: Results = {}
    over_http: Results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            results[n], found, http_found = bench_size(n, Path(tmp), first=n == SIZES[0])
            canned.update(found)
            over_http.update(http_found)
    render = subprocess.run(
        [sys.executable, str(HERE / "render.py")], capture_output=True, text=True, check=True
    ).stdout
    text = report(results, canned, over_http, render)
    if "--record" in sys.argv[1:]:
        results_file = HERE / "RESULTS.md"
        old = results_file.read_text() if results_file.exists() else ""
        results_file.write_text(sections.carried(old, text))
    print(text)


if __name__ == "__main__":
    main()
