"""``--seed FILE``: JSON Lines of jobs in ``JobInfo``'s JSON form -> one all-or-nothing insert.

Each line is checked against the ``JobInfo`` message (field names, enum names, types) and the
model (required ``domain_id`` and ``data_source_id``, lengths, choices); timestamps are ISO 8601.
The first bad line stops the load with its line number, before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job.query.schema import parse_datetime
from spaceone_job.store.model import InvalidJob, new_document
from spaceone_job.store.store import Document, JobStore

_TIMES = ("created_at", "updated_at", "finished_at")
# A line's fields are JobInfo's proto field names (snake_case), as upstream's clients send them.
FIELDS: tuple[str, ...] = tuple(f.name for f in job_pb2.JobInfo.DESCRIPTOR.fields)


class SeedError(ValueError):
    """A seed file line that cannot be loaded."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")


def _document(raw: Any, now: datetime) -> Document:
    if not isinstance(raw, dict):
        raise ValueError("a line is one JSON object")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; a line holds {', '.join(FIELDS)}")
    json_format.ParseDict(raw, job_pb2.JobInfo())
    data = {key: value for key, value in raw.items() if value not in ("", None)}
    for name in ("domain_id", "data_source_id"):
        if name not in data:
            raise ValueError(f"{name} is required")
    for name in _TIMES:
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
    return new_document(data)


def parse_lines(lines: Iterable[str], path: str, now: datetime) -> list[tuple[int, Document]]:
    """Each job of a seed file with its line number; :class:`SeedError` for the first bad line."""
    documents: list[tuple[int, Document]] = []
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
            doc = _document(raw, now)
        except (ValueError, json_format.ParseError, InvalidJob) as exc:
            raise SeedError(path, number, str(exc)) from exc
        first = seen.setdefault(doc["job_id"], number)
        if first != number:
            raise SeedError(path, number, f"job_id {doc['job_id']} repeats line {first}")
        documents.append((number, doc))
    return documents


def load(store: JobStore, path: Path, now: datetime) -> int:
    """Load a seed file into ``store``; how many jobs. Nothing is written if any line is bad."""
    with path.open(encoding="utf-8") as lines:
        documents = parse_lines(lines, str(path), now)
    lines_by_id = {doc["job_id"]: number for number, doc in documents}
    clash = store.find_one({"job_id": {"$in": list(lines_by_id)}}, {"job_id": 1})
    if clash is not None:
        number = lines_by_id[clash["job_id"]]
        raise SeedError(str(path), number, f"job_id {clash['job_id']} is already stored")
    store.insert([doc for _, doc in documents])
    return len(documents)
