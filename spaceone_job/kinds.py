"""Each kind of stored document (jobs, job tasks), described once.

A kind is read from its MongoEngine model (the fields stored, their types and choices, which are
required, which one is the unique id) and from its proto messages (the fields the API shows,
and the fields a ``list`` request narrows by). Only what neither says is written here: the
short form (``minimal``), what a watcher is told, and what a task takes from its job.

Everything else follows from a kind: the query schema (:mod:`.query.schema`), the rendering
(:mod:`.api.render`), the store's id key and the service's own fields (:mod:`.store`), the
``list`` shortcuts (:mod:`.service`), seed validation (:mod:`.seed`), the fields a watcher
compares (:mod:`.changes`) and a new task's inherited fields (:mod:`.lifecycle.jobs`). A field
added to a model and its message is served, queried, rendered and seeded with no other change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2

from spaceone_job.store.model import Field, Job, JobTask, Kind, Model, fields_of, key_of

_F = FieldDescriptor
# The request fields of a list that are not a document field to narrow by: the query itself,
# and the workspace, which is the caller's scope (checked as such).
_NOT_SHORTCUTS = ("query", "workspace_id")


# Compared and hashed by identity: there is one of each kind.
@dataclass(frozen=True, eq=False)
class DocumentKind:
    """One kind of document: its model, its messages, and what is derived from both."""

    noun: str
    model: Model
    # The message that shows one document (``JobInfo``), and the list request (``JobQuery``).
    info: type[Message]
    list_request: type[Message]
    # The short form a ``minimal`` query loads and renders: upstream's minimal fields, plus
    # workspace_id, which upstream renders but forgot to load (contract §6.6); less created_at,
    # which upstream loads and its short form never renders.
    minimal: tuple[str, ...]
    # What a watcher is told at once (a transition), and what at most every second (progress).
    transition: tuple[str, ...] = ()
    progress: tuple[str, ...] = ()
    # What a task takes from its job when it is made (and a seed line must agree on).
    inherited: tuple[str, ...] = ()

    # Derived in __post_init__.
    key: str = field(init=False)
    fields: tuple[Field, ...] = field(init=False)
    internal: tuple[str, ...] = field(init=False)
    shown: tuple[str, ...] = field(init=False)
    required: tuple[str, ...] = field(init=False)
    shortcuts: tuple[str, ...] = field(init=False)
    strings: tuple[str, ...] = field(init=False)
    ints: tuple[str, ...] = field(init=False)
    times: tuple[str, ...] = field(init=False)
    enums: dict[str, dict[str, int]] = field(init=False)
    structs: tuple[str, ...] = field(init=False)
    # What a minimal result leaves out.
    hidden: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        message = self.info.DESCRIPTOR
        stored = fields_of(self.model)
        names = {f.path for f in stored}
        missing = [f.name for f in message.fields if f.name not in names]
        if missing:
            raise TypeError(f"{message.name} shows {missing}, which {self.model.__name__} lacks")
        top = [f for f in stored if "." not in f.path]
        shown = tuple(f.path for f in top if f.path in message.fields_by_name)
        derived: dict[str, Any] = {
            "key": key_of(self.model),
            # Every stored path under a shown field: what a query may name.
            "fields": tuple(f for f in stored if f.path.split(".")[0] in shown),
            "shown": shown,
            "hidden": frozenset(shown) - frozenset(self.minimal),
            # Stored, never shown: the service's own (requests, events).
            "internal": tuple(f.path for f in top if f.path not in shown),
            "required": tuple(f.path for f in top if f.required),
            "shortcuts": tuple(
                f.name
                for f in self.list_request.DESCRIPTOR.fields
                if f.name in shown and f.name not in _NOT_SHORTCUTS
            ),
            "strings": _shown_as(top, message, Kind.STRING, _F.TYPE_STRING),
            "ints": _shown_as(top, message, Kind.INT, _F.TYPE_INT32),
            "times": _shown_as(top, message, Kind.DATETIME, _F.TYPE_STRING),
            "enums": {f.name: _numbers(f) for f in message.fields if f.type == _F.TYPE_ENUM},
            "structs": tuple(
                f.name
                for f in message.fields
                if f.message_type is not None and f.message_type.full_name == _STRUCT
            ),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


_STRUCT = "google.protobuf.Struct"


# Descriptors are typed Any: protobuf's stubs give its C and Python descriptors apart.
def _numbers(enum_field: Any) -> dict[str, int]:
    return {name: value.number for name, value in enum_field.enum_type.values_by_name.items()}


def _shown_as(top: list[Field], message: Any, kind: Kind, wire: int) -> tuple[str, ...]:
    """The stored fields of ``kind`` that the message shows as a scalar of type ``wire``."""
    return tuple(
        f.path
        for f in top
        if f.kind is kind
        and f.path in message.fields_by_name
        and message.fields_by_name[f.path].type == wire
    )


JOB = DocumentKind(
    "job",
    Job,
    job_pb2.JobInfo,
    job_pb2.JobQuery,
    minimal=(
        "job_id",
        "status",
        "total_tasks",
        "remained_tasks",
        "data_source_id",
        "workspace_id",
    ),
    transition=("status", "remained_tasks", "total_tasks", "finished_at", "error_code"),
    progress=("updated_at",),
)
TASK = DocumentKind(
    "job task",
    JobTask,
    job_task_pb2.JobTaskInfo,
    job_task_pb2.JobTaskQuery,
    minimal=(
        "job_task_id",
        "status",
        "created_count",
        "job_id",
        "data_source_id",
        "workspace_id",
    ),
    inherited=("job_id", "data_source_id", "workspace_id", "domain_id", "resource_group"),
)
