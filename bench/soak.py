"""``make soak``: a minute of everything at once against ``spaceone-job serve``, then SIGTERM.

The server (its own process, on the embedded store, verifying tokens with each domain's key from
identity) takes for ``--seconds`` (60): producers creating and running jobs, 1,000 watchers of
jobs being written, identity answering slowly for unknown domains, junk tokens of random
domains, 64 slow queries at once and cheap gets. Each kind of load runs in a process of its own,
so that no client's interpreter slows another's calls. Then the load ends and SIGTERM follows.

It passes when health answered within 1 s throughout, every call ended within its limit + 0.5 s,
no acknowledged write was lost, RSS came back within 20 % of its start once the load ended, and
the server exited 0. ``--record`` writes the summary to bench/RESULTS.md (section "Soak").
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import sections
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spaceone.api.core.v2 import handler_pb2
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc, job_task_pb2, job_task_pb2_grpc
from spaceone.api.identity.v2 import domain_pb2_grpc
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc
from watchers import free_port, hold_watchers, wait_serving

from spaceone_job import auth

DOMAIN = "domain-50a400000001"
BIN = Path(sys.executable).parent
QUERY_LIMIT_S = 1.0
SLACK_S = 0.5
WATCHERS = 1000
WATCHED_JOBS = 10
SLOW_QUERIES = 64
PRODUCERS = 4
JUNK_THREADS = 8
IDENTITY_DELAY_S = 0.3
# A first, shorter round of the same load brings the allocators to their working size (what
# memory a burst leaves in them is the interpreter's and glibc's, not the service's); RSS is
# compared before and after the soak proper, each read once the load has settled.
WARM_UP_S = 10.0
SETTLE_S = 10.0
# Deadlines the soak's clients give their calls (queries have the server's own limit).
PRODUCER_DEADLINE_S = 5.0
JUNK_DEADLINE_S = 3.0
LIMITS = {
    "slow list": QUERY_LIMIT_S,
    "get": QUERY_LIMIT_S,
    "producer": PRODUCER_DEADLINE_S,
    "junk token": JUNK_DEADLINE_S,
}


class SlowIdentity(domain_pb2_grpc.DomainServicer):
    """identity's Domain.get_public_key: the soak's domain at once, any other slowly, unknown."""

    def __init__(self, jwk: str) -> None:
        self.jwk = jwk
        self.calls = 0

    def get_public_key(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls += 1
        if request.domain_id != DOMAIN:
            time.sleep(IDENTITY_DELAY_S)
            context.abort(grpc.StatusCode.NOT_FOUND, "no such domain")
        return handler_pb2.AuthenticationResponse(domain_id=DOMAIN, public_key=self.jwk)


@dataclass
class Tally:
    """What a load saw, per kind of call: counts by code, the slowest, the limit broken; and the
    writes the server acknowledged (task -> rows reported)."""

    codes: defaultdict[str, defaultdict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    slowest: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    late: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    acknowledged: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, kind: str, work: Any) -> Any:
        started = time.monotonic()
        try:
            answer, code = work(), "OK"
        except grpc.RpcError as error:
            answer, code = None, error.code().name
        elapsed = time.monotonic() - started
        with self.lock:
            self.codes[kind][code] += 1
            self.slowest[kind] = max(self.slowest[kind], elapsed)
            if elapsed > LIMITS[kind] + SLACK_S:
                self.late[kind] += 1
        return answer

    def dumps(self) -> str:
        return json.dumps(
            {
                "codes": self.codes,
                "slowest": self.slowest,
                "late": self.late,
                "acknowledged": self.acknowledged,
            }
        )

    def add(self, text: str) -> None:
        other = json.loads(text)
        for kind, codes in other["codes"].items():
            for code, count in codes.items():
                self.codes[kind][code] += count
        for kind, seconds in other["slowest"].items():
            self.slowest[kind] = max(self.slowest[kind], seconds)
        for kind, count in other["late"].items():
            self.late[kind] += count
        for task_id, rows in other["acknowledged"].items():
            self.acknowledged[task_id] += rows


def new_key(folder: Path) -> tuple[Path, str]:
    """The domain's private key file, and its public JWK as identity hands it out."""
    path = folder / "domain.pem"
    return path, json.dumps(auth.new_rsa_key(path, DOMAIN))


def seed(folder: Path) -> Path:
    """300 finished jobs of the domain, for the slow queries and the gets."""
    now = datetime.now(UTC)
    path = folder / "seed.jsonl"
    with path.open("w") as out:
        for i in range(300):
            at = (now - timedelta(hours=i + 1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            line = {
                "job_id": f"job-{i:012x}",
                "status": "SUCCESS",
                "domain_id": DOMAIN,
                "workspace_id": "*",
                "data_source_id": "ds-500000000001",
                "options": {"name": f"job number {i}"},
                "created_at": at,
                "finished_at": at,
            }
            out.write(json.dumps(line) + "\n")
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    """One kind of load, in its own process, for ``seconds``."""

    def __init__(self, port: int, key: Path, seconds: float) -> None:
        self.port = port
        self.key = key
        self.ends = time.monotonic() + seconds
        self.tally = Tally()
        # Request ids of this process's own: a later round's are new requests, not retries.
        self.run_id = f"{os.getpid()}"

    def token(self, n: int = 0) -> str:
        return auth.mint_token(self.key, domain_id=DOMAIN, kid=DOMAIN, extra={"n": n})

    def channel(self) -> grpc.Channel:
        """A connection of one caller's own, as callers in their own processes have."""
        return grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def running(self) -> bool:
        return time.monotonic() < self.ends

    def threads(self, target: Any, count: int, *args: Any) -> None:
        workers = [threading.Thread(target=target, args=(n, *args)) for n in range(count)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def producer(self, worker: int) -> None:
        stub = producer_pb2_grpc.ProducerStub(self.channel())
        metadata = (("token", self.token()),)
        n = 0
        while self.running():
            n += 1
            request = producer_pb2.CreateJobRequest(
                request_id=f"{self.run_id}-w{worker}-{n}",
                data_source_id=f"ds-{worker:03d}{n:09d}",
                tasks=[producer_pb2.TaskSpec() for _ in range(5)],
            )
            created = self.timed("producer", stub.create_job, request, metadata)
            for task in created.tasks if created is not None else ():
                self.run_task(stub, metadata, task.job_task_id)

    def timed(self, kind: str, method: Any, request: Any, metadata: Any) -> Any:
        limit = LIMITS[kind] if kind != "slow list" else 30
        return self.tally.call(kind, lambda: method(request, metadata=metadata, timeout=limit))

    def run_task(self, stub: Any, metadata: Any, task_id: str) -> None:
        steps = [
            (stub.start_task, producer_pb2.TaskRequest(request_id="s", job_task_id=task_id)),
            *(
                (
                    stub.report_progress,
                    producer_pb2.ProgressRequest(
                        request_id=f"p{i}", job_task_id=task_id, created_count=10
                    ),
                )
                for i in range(2)
            ),
            (stub.finish_task, producer_pb2.FinishTaskRequest(request_id="f", job_task_id=task_id)),
        ]
        for method, request in steps:
            if self.timed("producer", method, request, metadata) is None:
                return
        self.tally.acknowledged[task_id] = 20

    def busy(self, worker: int, tasks: list[str]) -> None:
        """Progress on the watched jobs' tasks, so that their watchers have news."""
        stub = producer_pb2_grpc.ProducerStub(self.channel())
        metadata = (("token", self.token()),)
        n = 0
        while self.running():
            n += 1
            request = producer_pb2.ProgressRequest(
                request_id=f"{self.run_id}-busy-{n}",
                job_task_id=tasks[n % len(tasks)],
                created_count=1,
            )
            if self.timed("producer", stub.report_progress, request, metadata) is not None:
                self.tally.acknowledged[request.job_task_id] += 1
            time.sleep(0.02)

    def junk(self, worker: int) -> None:
        """Tokens of random domains: any signature does, identity is asked for the key."""
        stub = job_pb2_grpc.JobStub(self.channel())
        claims = {"typ": "ACCESS_TOKEN", "ver": "2.0", "rol": "DOMAIN_ADMIN"}
        while self.running():
            did = f"domain-{random.getrandbits(48):012x}"
            forged = jwt.encode({**claims, "did": did, "exp": time.time() + 600}, "x" * 32)
            self.timed("junk token", stub.list, job_pb2.JobQuery(), (("token", forged),))

    def slow(self, worker: int) -> None:
        stub = job_pb2_grpc.JobStub(self.channel())
        metadata = (("token", self.token()),)
        patterns = [f"^no-such-name-{n}$" for n in range(1000)]
        query = json_format.ParseDict(
            {
                "query": {
                    "filter": [{"k": "options.name", "v": patterns, "o": "regex_in"}],
                    "count_only": True,
                }
            },
            job_pb2.JobQuery(),
        )
        while self.running():
            self.timed("slow list", stub.list, query, metadata)

    def gets(self, worker: int) -> None:
        stub = job_pb2_grpc.JobStub(self.channel())
        metadata = (("token", self.token()),)
        request = job_pb2.JobRequest(job_id=f"job-{worker:012x}")
        while self.running():
            self.timed("get", stub.get, request, metadata)
            time.sleep(0.01)


def load(role: str, port: int, key: Path, seconds: float, tasks: list[str]) -> None:
    """A load process: run ``role``, then print its tally as one JSON line."""
    work = Load(port, key, seconds)
    if role == "producers":
        busy = threading.Thread(target=work.busy, args=(0, tasks))
        busy.start()
        work.threads(work.producer, PRODUCERS)
        busy.join()
    else:
        count = {"junk": JUNK_THREADS, "slow": SLOW_QUERIES, "gets": 2}[role]
        work.threads(getattr(work, role), count)
    print(work.tally.dumps(), flush=True)


def hold(port: int, key: Path, job_ids: list[str]) -> None:
    """The watchers' process: ``WATCHERS`` streams over ``job_ids`` (a token and a channel per
    job), "open" once each has its first event, until stdin closes."""
    per_job = WATCHERS // len(job_ids)
    opened = [threading.Event() for _ in job_ids]

    async def watch_all() -> None:
        await asyncio.gather(
            *(
                hold_watchers(
                    port,
                    [auth.mint_token(key, domain_id=DOMAIN, kid=DOMAIN, extra={"job": job_id})],
                    job_id,
                    per_job,
                    event,
                )
                for job_id, event in zip(job_ids, opened, strict=True)
            )
        )

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_until_complete, args=(watch_all(),), daemon=True).start()
    for event in opened:
        event.wait(120)
    print("open", flush=True)
    sys.stdin.read()


class Soak:
    """The server, identity, the loads, and what they saw."""

    def __init__(self, folder: Path, seconds: float) -> None:
        self.seconds = seconds
        self.key, jwk = new_key(folder)
        self.identity = SlowIdentity(jwk)
        self.identity_server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        domain_pb2_grpc.add_DomainServicer_to_server(self.identity, self.identity_server)
        identity_port = self.identity_server.add_insecure_port("127.0.0.1:0")
        self.identity_server.start()
        self.port, self.health_port = free_port(), free_port()
        (folder / "system-token").write_text("soak-system-token")
        self.server = subprocess.Popen(
            [
                *(str(BIN / "spaceone-job"), "serve", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--health-port", str(self.health_port)),
                *("--identity-endpoint", f"grpc://127.0.0.1:{identity_port}"),
                *("--system-token", f"@{folder / 'system-token'}"),
                *("--seed", str(seed(folder))),
                *("--query-timeout-ms", str(int(QUERY_LIMIT_S * 1000))),
                *("--grace-s", "10", "--log-level", "WARNING", "--state-dir", str(folder)),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_serving(self.port)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.tally = Tally()
        self.health_worst = 0.0
        self.health_failures = 0
        self.rss: list[float] = []

    def token(self) -> str:
        return auth.mint_token(self.key, domain_id=DOMAIN, kid=DOMAIN)

    def probe(self, stop: threading.Event) -> None:
        """Health on its own port and on the gRPC port every 0.1 s; the server's RSS."""
        stubs = [
            health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            for port in (self.health_port, self.port)
        ]
        while not stop.is_set():
            for stub in stubs:
                started = time.monotonic()
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    self.health_worst = max(self.health_worst, time.monotonic() - started)
                except grpc.RpcError:
                    self.health_failures += 1
            self.rss.append(rss_mb(self.server.pid))
            stop.wait(0.1)

    def watched_jobs(self) -> tuple[list[str], list[str]]:
        stub = producer_pb2_grpc.ProducerStub(self.channel)
        created = [
            stub.create_job(
                producer_pb2.CreateJobRequest(
                    request_id=f"watched-{n}",
                    data_source_id=f"ds-watched{n:04d}",
                    tasks=[producer_pb2.TaskSpec()],
                ),
                metadata=(("token", self.token()),),
                timeout=10,
            )
            for n in range(WATCHED_JOBS)
        ]
        return [c.job.job_id for c in created], [c.tasks[0].job_task_id for c in created]

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def lost_writes(self) -> int:
        """Acknowledged reports the stored tasks do not show."""
        stub = job_task_pb2_grpc.JobTaskStub(self.channel)
        metadata = (("token", self.token()),)
        lost = 0
        for task_id, rows in self.tally.acknowledged.items():
            task = stub.get(
                job_task_pb2.JobTaskRequest(job_task_id=task_id), metadata=metadata, timeout=10
            )
            lost += task.created_count < rows
        return lost

    def load_round(self, seconds: float, job_ids: list[str], task_ids: list[str]) -> bool:
        """Every load for ``seconds``, with the watchers; whether they all opened."""
        watchers = self.spawn("--hold", str(self.port), str(self.key), *job_ids)
        assert watchers.stdout is not None and watchers.stdin is not None
        opened = watchers.stdout.readline().strip() == "open"
        common = (str(self.port), str(self.key), str(seconds))
        loads = [
            self.spawn("--load", role, *common, *task_ids)
            for role in ("producers", "junk", "slow", "gets")
        ]
        for process in loads:
            out, _ = process.communicate(timeout=seconds + 120)
            self.tally.add(out.strip().splitlines()[-1])
        watchers.stdin.close()
        watchers.wait(30)
        return opened

    def run(self) -> dict[str, Any]:
        stop = threading.Event()
        prober = threading.Thread(target=self.probe, args=(stop,), daemon=True)
        prober.start()
        job_ids, task_ids = self.watched_jobs()
        time.sleep(SETTLE_S)
        cold_rss = rss_mb(self.server.pid)
        warmed = self.load_round(WARM_UP_S, job_ids, task_ids)
        time.sleep(SETTLE_S)
        start_rss, self.rss = rss_mb(self.server.pid), []
        opened = self.load_round(self.seconds, job_ids, task_ids)
        peak_rss = max(self.rss)
        lost = self.lost_writes()
        time.sleep(SETTLE_S)
        end_rss = rss_mb(self.server.pid)
        stop.set()
        prober.join(10)
        stopping = time.monotonic()
        self.server.send_signal(signal.SIGTERM)
        code = self.server.wait(60)
        self.identity_server.stop(0)
        return {
            "watchers_open": opened and warmed,
            "lost": lost,
            "cold_rss": cold_rss,
            "start_rss": start_rss,
            "peak_rss": peak_rss,
            "end_rss": end_rss,
            "exit": code,
            "stop_s": time.monotonic() - stopping,
        }

    def summary(self, outcome: dict[str, Any]) -> tuple[str, bool]:
        tally = self.tally
        late = sum(tally.late.values())
        rss_ok = outcome["end_rss"] <= outcome["start_rss"] * 1.2
        passed = bool(
            outcome["watchers_open"]
            and self.health_worst < 1.0
            and self.health_failures == 0
            and late == 0
            and outcome["lost"] == 0
            and rss_ok
            and outcome["exit"] == 0
        )
        lines = [
            f"`make soak` ({self.seconds:g} s, then SIGTERM): producers ({PRODUCERS} workers,"
            f" 5-task jobs), {WATCHERS} watchers of {WATCHED_JOBS} jobs being written,"
            f" {SLOW_QUERIES} slow queries at once (a `regex_in` of 1,000 patterns,"
            f" {QUERY_LIMIT_S:g} s limit), junk tokens of random domains from {JUNK_THREADS}"
            f" threads with identity answering those in {IDENTITY_DELAY_S:g} s, and gets; each"
            " load from a process of its own.",
            "",
            "| calls | by code | slowest s | limit s | past limit + 0.5 s |",
            "|---|---|---|---|---|",
        ]
        for kind, limit in LIMITS.items():
            codes = ", ".join(f"{code} {n}" for code, n in sorted(tally.codes[kind].items()))
            lines.append(
                f"| {kind} | {codes} | {tally.slowest[kind]:.2f} | {limit:g} | {tally.late[kind]} |"
            )
        change = 100 * outcome["end_rss"] / outcome["start_rss"] - 100
        lines += [
            "",
            f"- Health (its own port and the gRPC port, every 0.1 s): slowest answer"
            f" {self.health_worst:.2f} s, {self.health_failures} failed.",
            f"- Acknowledged writes checked afterwards: {len(tally.acknowledged)} tasks,"
            f" {outcome['lost']} lost.",
            f"- RSS: {outcome['cold_rss']:.0f} MB before the warm-up round ({WARM_UP_S:g} s of"
            f" the same load), {outcome['start_rss']:.0f} MB at the soak's start,"
            f" {outcome['peak_rss']:.0f} MB at its peak, {outcome['end_rss']:.0f} MB"
            f" {SETTLE_S:g} s after it ended ({change:+.0f} % of its start; bound +20 %).",
            f"- Identity was asked {self.identity.calls} times.",
            f"- SIGTERM: exit status {outcome['exit']} after {outcome['stop_s']:.1f} s.",
            "",
            f"**{'Passed' if passed else 'Failed'}.**",
        ]
        return "\n".join(lines), passed


def main() -> None:
    """Run the soak; print (and with --record, write) the summary; exit 1 when it failed."""
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 60
    with tempfile.TemporaryDirectory() as folder:
        soak = Soak(Path(folder), seconds)
        outcome = soak.run()
    text, passed = soak.summary(outcome)
    if "--record" in sys.argv[1:]:
        sections.record("Soak", text)
    print(text)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        hold(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
    elif sys.argv[1:2] == ["--load"]:
        role, port, key, seconds, *tasks = sys.argv[2:]
        load(role, int(port), Path(key), float(seconds), tasks)
    else:
        main()
