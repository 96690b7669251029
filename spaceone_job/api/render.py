"""Stored documents -> protobuf, straight from the raw dicts (no MongoEngine document per row).

One set of rules for every RPC: timestamps as ``YYYY-MM-DDTHH:MM:SS.mmmZ``, nulls left unset,
``options`` and ``changed.filter`` as Struct, enums by name. Fields missing from a document (left
out by ``only``) stay unset; they are never filled with defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2

from spaceone_job.kinds import JOB, TASK, DocumentKind
from spaceone_job.v1 import producer_pb2

Document = Mapping[str, Any]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``: milliseconds truncated, UTC."""
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _as_list(value: Any) -> list[Mapping[str, Any]]:
    # An unwound row holds one element where the document holds a list.
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, Mapping)]


def job_info(doc: Document, minimal: bool = False) -> job_pb2.JobInfo:
    """A stored job as ``JobInfo``; ``minimal`` keeps upstream's short form."""
    info = job_pb2.JobInfo()
    _fill_job(info, doc, minimal)
    return info


def job_task_info(doc: Document, minimal: bool = False) -> job_task_pb2.JobTaskInfo:
    """A stored job task as ``JobTaskInfo``; ``minimal`` keeps upstream's short form."""
    info = job_task_pb2.JobTaskInfo()
    _fill_task(info, doc, minimal)
    return info


def _fill(info: Any, doc: Document, minimal: bool, kind: DocumentKind) -> None:
    """The fields every message type has, as ``kind`` says."""
    hidden = kind.hidden if minimal else frozenset()
    # Values of the wrong type (a hand-edited database) are left unset, never a failed call.
    for name in kind.strings:
        value = doc.get(name)
        if isinstance(value, str) and name not in hidden:
            setattr(info, name, value)
    for name in kind.ints:
        value = doc.get(name)
        if isinstance(value, int) and _INT32_MIN <= value <= _INT32_MAX and name not in hidden:
            setattr(info, name, value)
    for name in kind.times:
        value = doc.get(name)
        if isinstance(value, datetime) and name not in hidden:
            setattr(info, name, timestamp(value))
    # Names a document may hold that the enums do not know (an older or hand-edited database)
    # are left unset rather than failing the call.
    for name, numbers in kind.enums.items():
        number = numbers.get(doc.get(name) or "")
        if number is not None and name not in hidden:
            setattr(info, name, number)
    for name in kind.structs:
        value = doc.get(name)
        if isinstance(value, Mapping) and name not in hidden:
            getattr(info, name).SetInParent()  # an empty dict is an empty Struct, present
            _update(getattr(info, name), value)


def _fill_changed(item: job_pb2.ChangedInfo, changed: Mapping[str, Any]) -> None:
    item.start, item.end = _text(changed, "start"), _text(changed, "end")
    item.filter.SetInParent()  # present even when empty, as upstream renders it
    if isinstance(changed.get("filter"), Mapping):
        _update(item.filter, changed["filter"])


def _fill_job(info: job_pb2.JobInfo, doc: Document, minimal: bool) -> None:
    _fill(info, doc, minimal, JOB)
    if minimal:
        return
    for changed in _as_list(doc.get("changed")):
        _fill_changed(info.changed.add(), changed)
    for account in _as_list(doc.get("synced_accounts")):
        info.synced_accounts.add(account_id=_text(account, "account_id"))


def _fill_task(info: job_task_pb2.JobTaskInfo, doc: Document, minimal: bool) -> None:
    _fill(info, doc, minimal, TASK)
    changed = doc.get("changed")
    if not minimal and isinstance(changed, Mapping):
        _fill_changed(info.changed, changed)


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    return value if isinstance(value, str) else ""


def jobs_info(docs: Iterable[Document], total_count: int, minimal: bool) -> job_pb2.JobsInfo:
    """A page of jobs and the count before paging (each filled in place, never copied)."""
    page = job_pb2.JobsInfo(total_count=total_count)
    for doc in docs:
        _fill_job(page.results.add(), doc, minimal)
    return page


def job_tasks_info(
    docs: Iterable[Document], total_count: int, minimal: bool
) -> job_task_pb2.JobTasksInfo:
    """A page of job tasks and the count before paging."""
    page = job_task_pb2.JobTasksInfo(total_count=total_count)
    for doc in docs:
        _fill_task(page.results.add(), doc, minimal)
    return page


def plain(value: Any) -> Any:
    """A stored value made JSON-like: datetimes as timestamps, anything else Struct cannot hold
    as its string form."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return timestamp(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _update(target: struct_pb2.Struct, value: Mapping[str, Any]) -> None:
    # Stored dicts are almost always plain JSON; convert (slowly) only what Struct refuses.
    try:
        target.update(value)
    except (ValueError, TypeError):
        target.Clear()
        target.update(plain(value))


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """A dict (stat results) as ``google.protobuf.Struct``."""
    message = struct_pb2.Struct()
    message.update(plain(value))
    return message


# The event fields copied as they are (``at`` is a timestamp).
_EVENT_TEXT = (
    "type",
    "job_id",
    "job_task_id",
    "by",
    "role",
    "request_id",
    "error_code",
    "error_message",
    "other_job_id",
)
_EVENT_INTS = ("created_count", "quiet_s")


def events(stored: Sequence[Document]) -> list[producer_pb2.Event]:
    """Stored events as ``Event`` messages."""
    shown = []
    for one in stored:
        message = producer_pb2.Event(at=timestamp(one["at"]))
        for name in _EVENT_TEXT:
            setattr(message, name, str(one.get(name) or ""))
        for name in _EVENT_INTS:
            setattr(message, name, int(one.get(name) or 0))
        shown.append(message)
    return shown


def watch_event(doc: Document) -> producer_pb2.WatchEvent:
    """A watched job as a ``WatchEvent``: the job, and its own events so far."""
    return producer_pb2.WatchEvent(job=job_info(doc), events=events(doc.get("events") or []))
