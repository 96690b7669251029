"""Calls of spaceone_job.v1.Producer over a real channel, for the tests that produce jobs."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from ..conftest import Answer, Live


def call(live: Live, method: str, request: Any, token: str, **metadata: str) -> Answer:
    stub = producer_pb2_grpc.ProducerStub(live.channel)
    pairs = (("token", token), *metadata.items())
    try:
        response, done = getattr(stub, method).with_call(request, metadata=pairs, timeout=10)
    except grpc.RpcError as error:
        return Answer(None, error.code(), error.details() or "")
    return Answer(response, done.code(), "")


def create(
    live: Live, token: str, request_id: str = "run-1", tasks: int = 2, **fields: Any
) -> Answer:
    request = json_format.ParseDict(
        {
            "request_id": request_id,
            "data_source_id": "ds-000000000001",
            "tasks": [
                {"options": {"part": i}, "changed": {"start": "2026-05"}} for i in range(tasks)
            ],
            **fields,
        },
        producer_pb2.CreateJobRequest(),
    )
    return call(live, "create_job", request, token)


def task_request(kind: str, task_id: str, request_id: str, **fields: Any) -> Any:
    message = {
        "start_task": producer_pb2.TaskRequest,
        "report_progress": producer_pb2.ProgressRequest,
        "finish_task": producer_pb2.FinishTaskRequest,
    }[kind]
    return message(job_task_id=task_id, request_id=request_id, **fields)


def report(
    live: Live, token: str, kind: str, task_id: str, request_id: str, **fields: Any
) -> Answer:
    return call(live, kind, task_request(kind, task_id, request_id, **fields), token)


def job_of(live: Live, token: str, job_id: str) -> job_pb2.JobInfo:
    answer = live.call("get", job_pb2.JobRequest(job_id=job_id), token)
    assert answer.code is grpc.StatusCode.OK, answer.details
    info: job_pb2.JobInfo = answer.response
    return info
