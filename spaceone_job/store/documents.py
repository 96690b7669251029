"""What every store shares: the document type, the store's exceptions, and helpers over plain
documents (copies, projections, pipelines without the service's own fields).

No driver here beyond BSON's ObjectId: the service layers import this module, never a store's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bson import ObjectId

Document = dict[str, Any]


class DuplicateJobId(Exception):
    """An insert met a unique value (``job_id``, ``job_task_id``, a create's request key) that
    is already stored."""


class ChangesUnavailable(Exception):
    """The deployment has no change streams (a standalone server, the embedded store)."""


class StoreError(Exception):
    """A store call that did not complete; the service answers it (errors.as_service_error)."""


class Unreachable(StoreError):
    """The database cannot be reached now; a later call may succeed."""


class OutOfTime(StoreError):
    """The call's time ran out before the store answered."""


class TooManyRows(Exception):
    """A pipeline stage of the caller's query would produce more than ``limit`` rows."""

    def __init__(self, stage: str, limit: int) -> None:
        super().__init__(f"{stage} over {limit} rows")
        self.stage = stage
        self.limit = limit


class StoreUnusable(RuntimeError):
    """The store cannot run as installed or configured (the message says why, in one line)."""


class QueryRefused(Exception):
    """The database refused a query built from a caller's request (the stored values do not
    fit it); ``reason`` is the database's own text, for the log, and ``stage`` the index of the
    pipeline stage refused, when the store knows it."""

    def __init__(self, reason: str, stage: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


def read_projection(
    projection: Mapping[str, Any] | None, internal: Sequence[str]
) -> dict[str, Any]:
    """The projection a read sends: never the ObjectId (it is never rendered, and leaving it out
    saves decoding it on every row), nor the service's own fields ``internal`` unless the
    projection names what it wants."""
    if projection and any(value for value in projection.values()):
        return {"_id": 0, **projection}
    return {"_id": 0, **dict.fromkeys(internal, 0), **(projection or {})}


def without_internal(pipeline: Sequence[Document], internal: Sequence[str]) -> list[Document]:
    """``pipeline`` with the service's own fields dropped after its leading ``$match`` stages
    (where an index serves them), so that rows never carry them."""
    stages = list(pipeline)
    lead = next((i for i, stage in enumerate(stages) if "$match" not in stage), len(stages))
    return [*stages[:lead], {"$project": dict.fromkeys(internal, 0)}, *stages[lead:]]


def without_id(stored: Document, hidden: Sequence[str] = ()) -> Document:
    """A copy of a stored document without its ObjectId (nor the fields ``hidden``)."""
    return {
        key: copied(value) if isinstance(value, _CONTAINERS) else value
        for key, value in stored.items()
        if key != "_id" and key not in hidden
    }


def without_object_ids(value: Any) -> Any:
    """A result row with ObjectIds as strings: driver types stay in the store."""
    if isinstance(value, dict):
        return {key: without_object_ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_object_ids(item) for item in value]
    return str(value) if isinstance(value, ObjectId) else value


# Stored documents are dicts, lists and immutable scalars: copying the containers is enough,
# and several times faster than copy.deepcopy.
_CONTAINERS = (dict, list)


def copied(value: Any) -> Any:
    """A copy of a stored value."""
    if isinstance(value, dict):
        return {
            key: copied(item) if isinstance(item, _CONTAINERS) else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [copied(item) if isinstance(item, _CONTAINERS) else item for item in value]
    return value
