"""What producers store is bounded so that a full page of the largest jobs or tasks stays under the
4 MiB a gRPC client accepts by default, and the bound is counted as the answer encodes it."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2

from spaceone_job import auth, sizes
from spaceone_job.api import render
from spaceone_job.config import Settings
from spaceone_job.lifecycle import Lifecycle
from spaceone_job.producer import Bounds, Producers
from spaceone_job.store.protocol import Store

from .conftest import Clock

pytestmark = pytest.mark.only_on(
    "embedded", why="the rendered page sizes, the same whichever store the documents come from"
)


CLIENT_LIMIT = 4 * 1024 * 1024
INT32_MAX = 2**31 - 1

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
objects = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=5)
changes = st.fixed_dictionaries(
    {"start": st.text(max_size=7), "end": st.text(max_size=7), "filter": objects}
)


@given(objects, st.lists(changes, max_size=3), st.lists(st.text(max_size=20), max_size=4))
def test_a_jobs_values_are_counted_as_its_answer_encodes_them(
    options: dict[str, Any], changed: list[dict[str, Any]], accounts: list[str]
) -> None:
    base = {"job_id": "job-000000000000", "options": {}}
    doc = base | {
        "options": options,
        "changed": changed,
        "synced_accounts": [{"account_id": a} for a in accounts],
    }
    added = render.job_info(doc).ByteSize() - render.job_info(base).ByteSize()
    counted = sizes.job_values(options, changed, accounts)
    assert added == sum(counted.values()) - sizes.delimited(0)


@given(objects, st.none() | changes)
def test_a_tasks_values_are_counted_as_its_answer_encodes_them(
    options: dict[str, Any], changed: dict[str, Any] | None
) -> None:
    base: dict[str, Any] = {"job_task_id": "job-task-000000000000", "options": {}}
    doc = base | {"options": options, "changed": changed}
    added = render.job_task_info(doc).ByteSize() - render.job_task_info(base).ByteSize()
    assert added == sum(sizes.task_values(options, changed).values()) - sizes.delimited(0)


def test_a_struct_is_counted_as_protobuf_encodes_it() -> None:
    value: dict[str, Any] = {"a": [1, "two", None, True, {"b": []}], "long": "x" * 300}
    message = struct_pb2.Struct()
    message.update(value)
    assert sizes.struct(value) == message.ByteSize()


def filled(limit: int, size: Any) -> dict[str, Any]:
    """Options of one long text that take exactly ``limit`` bytes as ``size`` counts them."""
    options = {"blob": ""}
    while sum(size(options).values()) < limit:
        options["blob"] += "x"
    assert sum(size(options).values()) == limit
    return options


def test_a_full_page_of_the_largest_jobs_and_tasks_fits_a_default_client(
    store: Store, tasks: Store, clock: Clock
) -> None:
    bounds, page_cap = Bounds(), Settings().max_page_limit
    assert (bounds.values_bytes, bounds.error_message_bytes) == (
        Settings().max_values_bytes,
        Settings().max_error_message_bytes,
    )
    producers = Producers(Lifecycle(store, tasks, clock), bounds)
    owner = auth.Caller(domain_id="d" * 40, workspace_id="w" * 40, role=auth.WORKSPACE_OWNER)
    change = {"start": "2026-01", "end": "2026-12"}
    created = producers.create_job(
        owner,
        {
            "request_id": "r" * 64,
            "data_source_id": "s" * 40,
            "options": filled(bounds.values_bytes, lambda o: sizes.job_values(o, [], [])),
            "tasks": [
                {
                    "options": filled(bounds.values_bytes, lambda o: sizes.task_values(o, change)),
                    "changed": change,
                }
            ],
        },
    )
    task_id = created.tasks[0]["job_task_id"]
    producers.start_task(owner, {"request_id": "s", "job_task_id": task_id})
    producers.report_progress(
        owner, {"request_id": "p", "job_task_id": task_id, "created_count": INT32_MAX}
    )
    producers.finish_task(
        owner,
        {
            "request_id": "f",
            "job_task_id": task_id,
            "error_code": "E" * 254,
            "error_message": "\u00e9" * 10_000,
        },
    )
    job = store.find_one({"job_id": created.job["job_id"]})
    task = tasks.find_one({"job_task_id": task_id})
    assert job is not None and task is not None
    jobs_page = job_pb2.JobsInfo(results=[render.job_info(job)] * page_cap, total_count=INT32_MAX)
    tasks_page = job_task_pb2.JobTasksInfo(
        results=[render.job_task_info(task)] * page_cap, total_count=INT32_MAX
    )
    # The README states these figures: keep them in step.
    assert jobs_page.ByteSize() < 2.5 * 1024 * 1024 < CLIENT_LIMIT
    assert tasks_page.ByteSize() < 3.5 * 1024 * 1024 < CLIENT_LIMIT
