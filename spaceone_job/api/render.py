"""Stored documents -> protobuf, straight from the raw dicts (no MongoEngine document per row).

One set of rules for every RPC: timestamps as ``YYYY-MM-DDTHH:MM:SS.mmmZ``, nulls left unset,
``options`` and ``changed.filter`` as Struct, enums by name. Fields missing from a document (left
out by ``only``) stay unset; they are never filled with defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2
from spaceone.api.cost_analysis.v1 import job_pb2

Document = Mapping[str, Any]

_STRINGS = ("job_id", "error_code", "error_message", "domain_id", "workspace_id", "data_source_id")
_INTS = ("total_tasks", "remained_tasks")
_TIMES = ("created_at", "updated_at", "finished_at")
_MINIMAL_STRINGS = ("job_id", "data_source_id", "workspace_id")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# Names a document may hold that the enum does not know (an older or hand-edited database) are
# left unset rather than failing the call.
_STATUS: dict[str, int] = dict(job_pb2.JobInfo.Status.items())
_RESOURCE_GROUP: dict[str, int] = dict(job_pb2.JobInfo.ResourceGroup.items())


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
    _fill(info, doc, minimal)
    return info


def _fill(info: job_pb2.JobInfo, doc: Document, minimal: bool) -> None:
    # Values of the wrong type (a hand-edited database) are left unset, never a failed call.
    for name in _MINIMAL_STRINGS if minimal else _STRINGS:
        value = doc.get(name)
        if isinstance(value, str):
            setattr(info, name, value)
    for name in _INTS:
        value = doc.get(name)
        if isinstance(value, int) and _INT32_MIN <= value <= _INT32_MAX:
            setattr(info, name, value)
    status = _STATUS.get(doc.get("status") or "")
    if status is not None:
        info.status = status  # type: ignore[assignment]
    if minimal:
        return
    resource_group = _RESOURCE_GROUP.get(doc.get("resource_group") or "")
    if resource_group is not None:
        info.resource_group = resource_group  # type: ignore[assignment]
    options = doc.get("options")
    if isinstance(options, Mapping):
        info.options.SetInParent()  # an empty dict is an empty Struct, present, as upstream
        _update(info.options, options)
    for name in _TIMES:
        value = doc.get(name)
        if isinstance(value, datetime):
            setattr(info, name, timestamp(value))
    for changed in _as_list(doc.get("changed")):
        item = info.changed.add(start=_text(changed, "start"), end=_text(changed, "end"))
        item.filter.SetInParent()  # present even when empty, as upstream renders it
        if isinstance(changed.get("filter"), Mapping):
            _update(item.filter, changed["filter"])
    for account in _as_list(doc.get("synced_accounts")):
        info.synced_accounts.add(account_id=_text(account, "account_id"))


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    return value if isinstance(value, str) else ""


def jobs_info(docs: Iterable[Document], total_count: int, minimal: bool) -> job_pb2.JobsInfo:
    """A page of jobs and the count before paging (each filled in place, never copied)."""
    page = job_pb2.JobsInfo(total_count=total_count)
    for doc in docs:
        _fill(page.results.add(), doc, minimal)
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
