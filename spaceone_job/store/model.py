"""The MongoEngine ``Job`` document: upstream's fields, names, lengths, choices and defaults.

Database ``cost-analysis``, collection ``job``, same field names as upstream, so an existing
upstream database is served as it is. Indexes are led by ``domain_id`` because every query the
service runs is scoped to one domain.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mongoengine import (
    DateTimeField,
    DictField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    IntField,
    ListField,
    StringField,
    ValidationError,
)
from mongoengine.base import BaseField

STATUSES = ("IN_PROGRESS", "SUCCESS", "FAILURE", "TIMEOUT", "CANCELED")
TASK_STATUSES = ("PENDING", "IN_PROGRESS", "SUCCESS", "FAILURE", "CANCELED")
RESOURCE_GROUPS = ("DOMAIN", "WORKSPACE")


def new_job_id() -> str:
    """``job-`` followed by 12 lowercase hex characters."""
    return "job-" + secrets.token_hex(6)


class Changed(EmbeddedDocument):  # type: ignore[misc]
    """A month range whose cost data the job replaced."""

    start = StringField(max_length=7, required=True)
    end = StringField(max_length=7, default=None, null=True)
    filter = DictField(default=dict)


class SyncedAccount(EmbeddedDocument):  # type: ignore[misc]
    """An account whose cost data the job collected."""

    account_id = StringField(max_length=100, required=True)


class Job(Document):  # type: ignore[misc]
    """One run of collecting cost data through a data source's plugin."""

    job_id = StringField(max_length=40, unique=True, default=new_job_id)
    status = StringField(max_length=20, default="IN_PROGRESS", choices=STATUSES)
    options = DictField(default=dict)
    error_code = StringField(max_length=254, default=None, null=True)
    error_message = StringField(default=None, null=True)
    total_tasks = IntField(default=0)
    remained_tasks = IntField(default=0)
    resource_group = StringField(max_length=40, choices=RESOURCE_GROUPS, null=True)
    data_source_id = StringField(max_length=40, required=True)
    workspace_id = StringField(max_length=40, default=None, null=True)
    domain_id = StringField(max_length=40, required=True)
    changed = ListField(EmbeddedDocumentField(Changed), default=list)
    synced_accounts = ListField(EmbeddedDocumentField(SyncedAccount), default=list, null=True)
    created_at = DateTimeField(required=True)
    updated_at = DateTimeField(required=True)
    finished_at = DateTimeField(default=None, null=True)
    # The producer's create request that made the job (key, fingerprint, first answer); never
    # rendered. Its key is unique (in the domain, the workspace: see idempotency.py).
    request = DictField(default=None)
    # The job's transitions, the newest kept (see trail.py); never rendered.
    events = ListField(DictField(), default=list)

    meta: ClassVar[dict[str, Any]] = {
        "collection": "job",
        "db_alias": "default",
        "ordering": ["-created_at"],
        "auto_create_index": False,
        "indexes": [
            {"fields": ["domain_id", "-created_at"], "name": "domain_created"},
            {"fields": ["domain_id", "workspace_id", "-created_at"], "name": "domain_workspace"},
            {"fields": ["domain_id", "data_source_id", "-created_at"], "name": "domain_source"},
            {"fields": ["domain_id", "status", "-created_at"], "name": "domain_status"},
            {"fields": ["status", "updated_at"], "name": "status_updated"},
            # A create's retry finds its job; two creates of one request make one job.
            {"fields": ["request.key"], "name": "request_key", "unique": True, "sparse": True},
        ],
    }


def new_task_id() -> str:
    """``job-task-`` followed by 12 lowercase hex characters."""
    return "job-task-" + secrets.token_hex(6)


class JobTask(Document):  # type: ignore[misc]
    """One part of a job (a secret, an account set, a month range), run by one worker."""

    job_task_id = StringField(max_length=40, unique=True, default=new_task_id)
    status = StringField(max_length=20, default="PENDING", choices=TASK_STATUSES)
    options = DictField(default=dict)
    # The month range the task replaces (not in upstream's model; its proto has the field).
    changed = EmbeddedDocumentField(Changed, default=None, null=True)
    created_count = IntField(default=0)
    error_code = StringField(max_length=254, default=None, null=True)
    error_message = StringField(default=None, null=True)
    resource_group = StringField(max_length=40, choices=RESOURCE_GROUPS, null=True)
    job_id = StringField(max_length=40, required=True)
    data_source_id = StringField(max_length=40, required=True)
    workspace_id = StringField(max_length=40, default=None, null=True)
    domain_id = StringField(max_length=40, required=True)
    created_at = DateTimeField(required=True)
    started_at = DateTimeField(default=None, null=True)
    updated_at = DateTimeField(required=True)
    finished_at = DateTimeField(default=None, null=True)
    # The producers' requests (key, fingerprint, first answer), each written with the change it
    # made, for the task's whole life; never rendered.
    requests = ListField(DictField(), default=list)
    # The task's transitions (see trail.py); never rendered.
    events = ListField(DictField(), default=list)

    meta: ClassVar[dict[str, Any]] = {
        "collection": "job_task",
        "db_alias": "default",
        "ordering": ["-created_at"],
        "auto_create_index": False,
        "indexes": [
            {"fields": ["domain_id", "job_id", "created_at"], "name": "domain_job"},
            {"fields": ["domain_id", "-created_at"], "name": "domain_created"},
            {"fields": ["domain_id", "workspace_id", "-created_at"], "name": "domain_workspace"},
            {"fields": ["domain_id", "data_source_id", "-created_at"], "name": "domain_source"},
            {"fields": ["domain_id", "status", "-created_at"], "name": "domain_status"},
            # The lifecycle's cascades: a job's unfinished tasks.
            {"fields": ["job_id", "status"], "name": "job_status"},
        ],
    }


class InvalidJob(ValueError):
    """A document that breaks its model's rules (missing field, bad choice, too long)."""


def _strip(value: Any) -> Any:
    # Upstream trims every string it stores, dict keys and values included.
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {_strip(key): _strip(item) for key, item in value.items()}
    return value


Model = type[Job] | type[JobTask]


def new_document(data: dict[str, Any], model: Model = Job) -> dict[str, Any]:
    """``data`` validated against ``model``, defaults filled, as the dict MongoDB stores (a
    nullable field left out is stored as null, as upstream's documents hold it)."""
    unknown = sorted(set(data) - set(model._fields))
    if unknown:
        raise InvalidJob(f"unknown fields {unknown}")
    try:
        document = model(**{key: _strip(value) for key, value in data.items()})
        document.validate()
    except (ValidationError, TypeError, ValueError) as exc:
        raise InvalidJob(str(exc)) from exc
    stored: dict[str, Any] = document.to_mongo().to_dict()
    return stored


class Kind(enum.Enum):
    """How a stored field's values are typed (the words name them in error messages)."""

    STRING = "string"
    INT = "integer"
    DATETIME = "datetime"
    # Anything: a path inside a free-form object (``options.region``).
    ANY = "free-form value"
    OBJECT = "object"
    ARRAY = "array of objects"


@dataclass(frozen=True)
class Field:
    """One field path of a model's documents and what it holds."""

    path: str
    kind: Kind
    choices: tuple[str, ...] = ()
    # Inside a list of embedded documents (``changed.start``): Mongo matches any element.
    in_array: bool = False
    required: bool = False
    # A free-form object (a DictField): any sub-path may be named, of kind ANY.
    free_form: bool = False


_KINDS: dict[type[BaseField], Kind] = {
    StringField: Kind.STRING,
    IntField: Kind.INT,
    DateTimeField: Kind.DATETIME,
    DictField: Kind.OBJECT,
}


def fields_of(model: Model) -> tuple[Field, ...]:
    """Every field path of ``model``'s documents, embedded ones included, in declared order."""
    return tuple(_walk(model._fields, "", in_array=False))


def _walk(fields: Mapping[str, BaseField], prefix: str, *, in_array: bool) -> Iterator[Field]:
    for name, declared in fields.items():
        if name == "id":  # MongoDB's _id: never read nor named
            continue
        path, required = prefix + name, bool(declared.required)
        inner = declared.field if isinstance(declared, ListField) else declared
        embedded = inner.document_type if isinstance(inner, EmbeddedDocumentField) else None
        if isinstance(declared, ListField):
            yield Field(path, Kind.ARRAY, in_array=in_array, required=required)
        elif embedded is not None:
            yield Field(path, Kind.OBJECT, in_array=in_array, required=required)
        else:
            choices = tuple(declared.choices or ())
            free_form = isinstance(declared, DictField)
            yield Field(path, _KINDS[type(declared)], choices, in_array, required, free_form)
        if embedded is not None:
            inside = in_array or isinstance(declared, ListField)
            yield from _walk(embedded._fields, path + ".", in_array=inside)


def key_of(model: Model) -> str:
    """The unique id field of ``model``'s documents (``job_id``, ``job_task_id``)."""
    (key,) = (name for name, declared in model._fields.items() if declared.unique)
    return str(key)
