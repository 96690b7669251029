"""``--seed FILE``: JSON Lines of jobs and job tasks -> all-or-nothing inserts.

A line is a job in ``JobInfo``'s JSON form, or (when it has ``job_task_id``) a task in
``JobTaskInfo``'s; field names are the proto names (snake_case), enums by name, timestamps ISO
8601. Each is checked against its message and its model (required ``domain_id``,
``data_source_id``, and for a task ``job_id``; lengths, choices). A task's job must be in the
same file or already stored; the task takes what it leaves out of its job's domain, workspace,
data source and resource group, and must agree on what it states. The first bad line stops the
load with its line number, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from spaceone_job.kinds import JOB, TASK, DocumentKind
from spaceone_job.query.schema import parse_datetime
from spaceone_job.store.documents import Document
from spaceone_job.store.model import InvalidJob, new_document
from spaceone_job.store.protocol import Store


class SeedError(ValueError):
    """A seed file line that cannot be loaded."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")


def _document(raw: Any, now: datetime) -> tuple[DocumentKind, Document]:
    if not isinstance(raw, dict):
        raise ValueError("a line is one JSON object")
    kind = TASK if TASK.key in raw else JOB
    unknown = sorted(set(raw) - set(kind.shown))
    if unknown:
        shown = ", ".join(kind.shown)
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; a line holds {shown}")
    json_format.ParseDict(raw, kind.info())
    data = {key: value for key, value in raw.items() if value not in ("", None)}
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
    for name in kind.required:
        if name not in data:
            raise ValueError(f"{name} is required")
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
        key = doc[kind.key]
        first = seen.setdefault(key, number)
        if first != number:
            raise SeedError(path, number, f"{key} repeats line {first}")
        (parsed.tasks if kind is TASK else parsed.jobs).append((number, doc))
    return parsed


def _check_tasks(parsed: Parsed, jobs: Store, path: str) -> None:
    """Every task's job is in the file or stored; what a task inherits from its job it takes
    from it when the line leaves it out, and must agree on otherwise."""
    in_file = {doc["job_id"]: doc for _, doc in parsed.jobs}
    for number, task in parsed.tasks:
        job: Mapping[str, Any] | None = in_file.get(task["job_id"]) or jobs.find_one(
            {"job_id": task["job_id"]}
        )
        if job is None:
            raise SeedError(path, number, f"its job {task['job_id']} is neither here nor stored")
        for name in TASK.inherited:
            if task.get(name) is None:
                task[name] = job.get(name)
            elif job.get(name) != task[name]:
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
