"""Rendering micro-benchmark: 1,000 stored jobs -> ``JobsInfo``, two ways, same data.

- ours: raw documents from the driver, converted straight to protobuf (``api/render.py``);
- per-document: a MongoEngine document per row, then dicts converted through ``Struct`` and
  keyword arguments, the way upstream's info layer does it.

Prints a Markdown section for RESULTS.md.
"""

from __future__ import annotations

import json
import timeit
from datetime import UTC, datetime
from typing import Any

import mongoengine
import mongomock
from google.protobuf import struct_pb2
from mongoengine.connection import get_db
from run import DOMAIN, seed_jobs
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job.api import render
from spaceone_job.query.listing import DEFAULT_SORT
from spaceone_job.seed import parse_lines
from spaceone_job.store.embedded import EmbeddedStore
from spaceone_job.store.model import Job

ROWS = 1000
REPEAT = 15


def as_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds") + "Z"


def per_document_info(vo: Any) -> job_pb2.JobInfo:
    """A JobInfo built from a MongoEngine document through dicts and Struct."""
    info = {
        "job_id": vo.job_id,
        "status": vo.status,
        "options": as_struct(dict(vo.options)),
        "error_code": vo.error_code,
        "error_message": vo.error_message,
        "total_tasks": vo.total_tasks,
        "remained_tasks": vo.remained_tasks,
        "changed": [
            # As upstream: the filter is always there, an empty Struct when the dict is empty.
            job_pb2.ChangedInfo(start=c.start, end=c.end, filter=as_struct(dict(c.filter or {})))
            for c in vo.changed
        ],
        "synced_accounts": [
            job_pb2.SyncedAccountInfo(account_id=a.account_id) for a in vo.synced_accounts or []
        ],
        "resource_group": vo.resource_group,
        "domain_id": vo.domain_id,
        "workspace_id": vo.workspace_id,
        "data_source_id": vo.data_source_id,
        "created_at": iso(vo.created_at),
        "updated_at": iso(vo.updated_at),
        "finished_at": iso(vo.finished_at),
    }
    return job_pb2.JobInfo(**info)


def main() -> None:
    mongoengine.connect(
        alias="default",
        db="render-bench",
        host="mongodb://localhost",
        mongo_client_class=mongomock.MongoClient,
        uuidRepresentation="standard",
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    lines = [json.dumps({**j, "domain_id": DOMAIN}) for j in seed_jobs(ROWS, now)]
    store = EmbeddedStore(get_db("default")["job"], "bench")
    store.insert([doc for _, doc in parse_lines(lines, "bench", now).jobs])

    def ours_fetch() -> list[dict[str, Any]]:
        return store.find(
            {"domain_id": DOMAIN},
            projection=None,
            sort=DEFAULT_SORT,
            skip=0,
            limit=ROWS,
            timeout=30,
        )

    def per_document_fetch() -> list[Any]:
        return list(Job.objects(domain_id=DOMAIN).order_by("-created_at")[:ROWS])

    docs, vos = ours_fetch(), per_document_fetch()
    assert len(docs) == len(vos) == ROWS
    ours_message = render.jobs_info(docs, ROWS, minimal=False)
    theirs_message = job_pb2.JobsInfo(results=[per_document_info(v) for v in vos], total_count=ROWS)

    def by_id(message: job_pb2.JobsInfo) -> list[job_pb2.JobInfo]:
        return sorted(message.results, key=lambda info: info.job_id)

    assert by_id(ours_message) == by_id(theirs_message), "both render the same jobs"

    def best(fn: Any) -> float:
        return min(timeit.repeat(fn, number=1, repeat=REPEAT))

    ours_render = best(lambda: render.jobs_info(docs, ROWS, minimal=False))
    theirs_render = best(
        lambda: job_pb2.JobsInfo(results=[per_document_info(v) for v in vos], total_count=ROWS)
    )
    ours_total = best(lambda: render.jobs_info(ours_fetch(), ROWS, minimal=False))
    theirs_total = best(
        lambda: job_pb2.JobsInfo(
            results=[per_document_info(v) for v in per_document_fetch()], total_count=ROWS
        )
    )
    print("## Rendering: 1,000 stored jobs -> JobsInfo")
    print()
    print(f"Best of {REPEAT} runs, same jobs, embedded store.")
    print()
    print(
        "| step | ours (raw documents -> protobuf) | per-document (MongoEngine + Struct) |", end=""
    )
    print(" speed-up |")
    print("|---|---|---|---|")
    print(
        f"| render only | {ours_render * 1000:.1f} ms | {theirs_render * 1000:.1f} ms"
        f" | {theirs_render / ours_render:.1f}x |"
    )
    print(
        f"| fetch + render | {ours_total * 1000:.1f} ms | {theirs_total * 1000:.1f} ms"
        f" | {theirs_total / ours_total:.1f}x |"
    )
    print()
    print(f"**Target >= 3x faster (fetch + render): {theirs_total / ours_total:.1f}x.**")


if __name__ == "__main__":
    main()
