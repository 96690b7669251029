"""``--seed FILE``: JSON Lines of jobs and job tasks -> all-or-nothing inserts.

A line is a job in ``JobInfo``'s JSON form, or (when it has ``job_task_id``) a task in
``JobTaskInfo``'s; field names are the proto names (snake_case), enums by name, timestamps ISO
8601. Each is checked against its message and its model (required ``domain_id``,
``data_source_id``, and for a task ``job_id``; lengths, choices). A task's job must be in the
same file or already stored, in the same domain, workspace and data source. The first bad line
stops the load with its line number, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format, message
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2

from spaceone_job.query.schema import parse_datetime
from spaceone_job.store.documents import Document
from spaceone_job.store.model import InvalidJob, Job, JobTask, Model, new_document
from spaceone_job.store.protocol import Store

# What a task shares with its job, and must agree on.
INHERITED = ("domain_id", "workspace_id", "data_source_id")


@dataclass(frozen=True)
class Kind:
    """One kind of line: its message, model, required fields and timestamps."""

    message: type[message.Message]
    model: Model
    required: tuple[str, ...]
    times: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """The proto field names a line of this kind may hold."""
        return tuple(f.name for f in self.message.DESCRIPTOR.fields)


JOB = Kind(
    job_pb2.JobInfo,
    Job,
    ("domain_id", "data_source_id"),
    ("created_at", "updated_at", "finished_at"),
)
TASK = Kind(
    job_task_pb2.JobTaskInfo,
    JobTask,
    ("domain_id", "data_source_id", "job_id"),
    ("created_at", "started_at", "updated_at", "finished_at"),
)


class SeedError(ValueError):
    """A seed file line that cannot be loaded."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")


def _document(raw: Any, now: datetime) -> tuple[Kind, Document]:
    if not isinstance(raw, dict):
        raise ValueError("a line is one JSON object")
    kind = TASK if "job_task_id" in raw else JOB
    unknown = sorted(set(raw) - set(kind.fields))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)}; a line holds {', '.join(kind.fields)}"
        )
    json_format.ParseDict(raw, kind.message())
    data = {key: value for key, value in raw.items() if value not in ("", None)}
    for name in kind.required:
        if name not in data:
            raise ValueError(f"{name} is required")
    for name in kind.times:
        if name in data:
            try:
                data[name] = parse_datetime(data[name])
            except ValueError as exc:
                raise ValueError(
                    f"{name}: {data[name]!r} is not an ISO 8601 date-time such as"
                    " 2024-05-01T13:00:00.000Z"
                ) from exc
    data.setdefault("created_at", now)
    data.setdefault("updated_at", data["created_at"])
    if data.get("resource_group") == "RESOURCE_GROUP_NONE":
        del data["resource_group"]
    return kind, new_document(data, kind.model)


@dataclass
class Parsed:
    """A seed file's jobs and tasks, each with its line number."""

    jobs: list[tuple[int, Document]] = field(default_factory=list)
    tasks: list[tuple[int, Document]] = field(default_factory=list)


def parse_lines(lines: Iterable[str], path: str, now: datetime) -> Parsed:
    """Each job and task of a seed file; :class:`SeedError` for the first bad line."""
    parsed = Parsed()
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SeedError(
                path, number, f"not valid JSON: {exc.msg} at column {exc.colno}"
            ) from exc
        try:
            kind, doc = _document(raw, now)
        except (ValueError, json_format.ParseError, InvalidJob) as exc:
            raise SeedError(path, number, str(exc)) from exc
        key = doc["job_task_id"] if kind is TASK else doc["job_id"]
        first = seen.setdefault(key, number)
        if first != number:
            raise SeedError(path, number, f"{key} repeats line {first}")
        (parsed.tasks if kind is TASK else parsed.jobs).append((number, doc))
    return parsed


def _check_tasks(parsed: Parsed, jobs: Store, path: str) -> None:
    """Every task's job is in the file or stored, and agrees on domain, workspace and source."""
    in_file = {doc["job_id"]: doc for _, doc in parsed.jobs}
    for number, task in parsed.tasks:
        job: Mapping[str, Any] | None = in_file.get(task["job_id"]) or jobs.find_one(
            {"job_id": task["job_id"]}
        )
        if job is None:
            raise SeedError(path, number, f"its job {task['job_id']} is neither here nor stored")
        for name in INHERITED:
            if job.get(name) != task.get(name):
                raise SeedError(
                    path, number, f"{name} {task.get(name)!r} is not its job's ({job.get(name)!r})"
                )


def _refuse_stored(store: Store, lines: list[tuple[int, Document]], path: str) -> None:
    numbers = {doc[store.key]: number for number, doc in lines}
    if not numbers:
        return
    clash = store.find_one({store.key: {"$in": list(numbers)}}, {store.key: 1})
    if clash is not None:
        key = clash[store.key]
        raise SeedError(path, numbers[key], f"{store.key} {key} is already stored")


def load(jobs: Store, tasks: Store, path: Path, now: datetime) -> tuple[int, int]:
    """Load a seed file; how many jobs and tasks. Nothing is written if any line is bad."""
    with path.open(encoding="utf-8") as lines:
        parsed = parse_lines(lines, str(path), now)
    _check_tasks(parsed, jobs, str(path))
    _refuse_stored(jobs, parsed.jobs, str(path))
    _refuse_stored(tasks, parsed.tasks, str(path))
    jobs.insert([doc for _, doc in parsed.jobs])
    tasks.insert([doc for _, doc in parsed.tasks])
    return len(parsed.jobs), len(parsed.tasks)
