"""GET /openapi.json: a valid OpenAPI 3.1 document of exactly the served routes, whose schemas
describe the answers the routes really give."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from spaceone_job.api import http

from .conftest import Live, Serve, Token
from .support.http_calls import get, post, stream
from .support.producing import create

pytestmark = pytest.mark.only_on("embedded", why="the HTTP port's document, not storage")


@pytest.fixture
def served(serve: Serve) -> Live:
    return serve(http_port=0)


def document(live: Live) -> dict[str, Any]:
    status, body = get(live, http.OPENAPI_PATH)
    assert status == 200
    return body


def conforms(doc: dict[str, Any], schema: dict[str, Any], answer: Any) -> None:
    """``answer`` fits ``schema`` (a response's), its references read from ``doc``."""
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(answer)


def test_the_document_is_valid_openapi_3_1(served: Live) -> None:
    doc = document(served)
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_the_document_has_exactly_the_served_routes(served: Live) -> None:
    router = served.app.http.runner.app.router
    routed = {(r.method, r.resource.canonical) for r in router.routes() if r.method != "HEAD"}
    paths = document(served)["paths"]
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert documented == routed


def test_the_protos_comments_are_the_descriptions(served: Live) -> None:
    doc = document(served)
    assert doc["paths"]["/cost-analysis/v1/job/get"]["post"]["summary"] == "Gets one job."
    request = doc["components"]["schemas"]["spaceone_job.v1.CreateJobRequest"]
    assert request["properties"]["workspace_id"]["description"].startswith("Empty: the caller's")


def response_schema(doc: dict[str, Any], path: str, media: str = "application/json") -> Any:
    return doc["paths"][path]["post"]["responses"]["200"]["content"][media]["schema"]


def test_the_schemas_describe_real_answers(served: Live, token: Token) -> None:
    doc, admin = document(served), token()
    job_id = create(served, admin, tasks=1).response.job.job_id
    auth = {"token": admin}
    answers = {
        "/cost-analysis/v1/job/get": {"job_id": job_id},
        "/cost-analysis/v1/job/list": {},
        "/cost-analysis/v1/job/stat": {"query": {"distinct": "status"}},
        "/cost-analysis/v1/job-task/list": {"job_id": job_id},
        "/cost-analysis/v1/job/cancel": {"job_id": job_id},
    }
    for path, body in answers.items():
        status, answer, _ = post(served, path, body, auth)
        assert status == 200, answer
        conforms(doc, response_schema(doc, path), answer)
    watch = "/spaceone-job/v1/watch/watch"
    status, lines, _ = stream(served, watch, {"job_id": job_id}, auth)
    assert status == 200 and lines
    for line in lines:
        conforms(doc, response_schema(doc, watch, "application/x-ndjson"), line)
    status, refused, _ = post(served, "/cost-analysis/v1/job/get", {"job_id": "job-nope"}, auth)
    assert status == 404
    default = doc["paths"]["/cost-analysis/v1/job/get"]["post"]["responses"]["default"]
    conforms(doc, default["content"]["application/json"]["schema"], refused)


def test_a_request_the_schema_refuses_is_refused_by_the_route(served: Live, token: Token) -> None:
    doc = document(served)
    schema = doc["paths"]["/cost-analysis/v1/job/list"]["post"]["requestBody"]["content"]
    with pytest.raises(jsonschema.ValidationError):
        conforms(doc, schema["application/json"]["schema"], {"colour": 1})
    auth = {"token": token()}
    status, answer, _ = post(served, "/cost-analysis/v1/job/list", {"colour": 1}, auth)
    assert status == 400 and "colour" in json.dumps(answer)
