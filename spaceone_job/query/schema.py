"""The field schema: every queryable field and sub-field of a job, with its type.

It decides which keys a filter, sort, ``only``, ``unwind`` or stat stage may name, and how a
value sent for that key is checked and converted. Nothing outside this table can reach the
database as a field path.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spaceone_job.errors import Code, ServiceError, shown
from spaceone_job.store.model import RESOURCE_GROUPS, STATUSES, TASK_STATUSES


class Kind(enum.Enum):
    """How a field's values are typed."""

    STRING = "string"
    INT = "integer"
    DATETIME = "datetime"
    ANY = "free-form value"
    OBJECT = "object"
    ARRAY = "array of objects"


@dataclass(frozen=True)
class Field:
    """One field path and what it holds."""

    path: str
    kind: Kind
    choices: tuple[str, ...] = ()
    # Inside a list of embedded documents (``changed.start``): Mongo matches any element.
    in_array: bool = False


_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,99}$")


class Schema:
    """The fields of one kind of document (jobs, job tasks): which paths a request may name
    and what each holds. Free-form objects (``options``) take any sub-path, of kind ANY."""

    def __init__(
        self,
        noun: str,
        fields: Sequence[Field],
        open_objects: Sequence[str],
        *,
        minimal: Sequence[str],
        keyword: str,
    ) -> None:
        self.noun = noun
        self._fields = {f.path: f for f in fields}
        self._open = tuple(open_objects)
        self.minimal: tuple[str, ...] = tuple(minimal)
        # The field the ``keyword`` search looks in.
        self.keyword = keyword
        self.document_fields = tuple(path for path in self._fields if "." not in path)
        self.array_fields = tuple(p for p, f in self._fields.items() if f.kind is Kind.ARRAY)
        nested = [p for p in self._fields if "." in p and not p.startswith(self._open)]
        self._hint = ", ".join([f"a {noun} field", *(f"{o}.*" for o in self._open), *nested])

    def lookup(self, path: str, where: str) -> Field:
        """The field at ``path``; ``where`` names the request part for the error."""
        known = self._fields.get(path)
        if known is not None:
            return known
        for root in self._open:
            rest = path.removeprefix(root + ".")
            if rest != path and all(_SEGMENT.match(segment) for segment in rest.split(".")):
                return Field(path, Kind.ANY, in_array=self._fields[root].in_array)
        raise ServiceError(
            Code.INVALID_PARAMETER,
            f"Unknown field {shown(path)}: use {self._hint}.",
            key=where,
        )

    def sub_field(self, array: Field, sub_path: str, where: str) -> Field:
        """A field inside the documents of an array field (``start`` of ``changed``)."""
        return self.lookup(f"{array.path}.{sub_path}", where)


_COMMON = (
    Field("status", Kind.STRING, STATUSES),
    Field("options", Kind.OBJECT),
    Field("error_code", Kind.STRING),
    Field("error_message", Kind.STRING),
    Field("resource_group", Kind.STRING, RESOURCE_GROUPS),
    Field("data_source_id", Kind.STRING),
    Field("workspace_id", Kind.STRING),
    Field("domain_id", Kind.STRING),
    Field("created_at", Kind.DATETIME),
    Field("updated_at", Kind.DATETIME),
    Field("finished_at", Kind.DATETIME),
)

JOB = Schema(
    "job",
    [
        Field("job_id", Kind.STRING),
        *_COMMON,
        Field("total_tasks", Kind.INT),
        Field("remained_tasks", Kind.INT),
        Field("changed", Kind.ARRAY),
        Field("changed.start", Kind.STRING, in_array=True),
        Field("changed.end", Kind.STRING, in_array=True),
        Field("changed.filter", Kind.OBJECT, in_array=True),
        Field("synced_accounts", Kind.ARRAY),
        Field("synced_accounts.account_id", Kind.STRING, in_array=True),
    ],
    ("options", "changed.filter"),
    # Upstream's minimal fields, plus workspace_id, which upstream renders but forgot to load.
    minimal=(
        "job_id",
        "status",
        "total_tasks",
        "remained_tasks",
        "data_source_id",
        "workspace_id",
        "created_at",
    ),
    keyword="job_id",
)

JOB_TASK = Schema(
    "job task",
    [
        Field("job_task_id", Kind.STRING),
        Field("job_id", Kind.STRING),
        *(f for f in _COMMON if f.path != "status"),
        Field("status", Kind.STRING, TASK_STATUSES),
        Field("created_count", Kind.INT),
        Field("started_at", Kind.DATETIME),
        # One month range per task (upstream's proto has it; contract §10 renders it).
        Field("changed", Kind.OBJECT),
        Field("changed.start", Kind.STRING),
        Field("changed.end", Kind.STRING),
        Field("changed.filter", Kind.OBJECT),
    ],
    ("options", "changed.filter"),
    minimal=(
        "job_task_id",
        "status",
        "created_count",
        "job_id",
        "data_source_id",
        "workspace_id",
        "created_at",
    ),
    keyword="job_task_id",
)


def type_error(f: Field, value: Any, where: str) -> ServiceError:
    """The error for a value of the wrong type for ``f``."""
    return ServiceError(
        Code.INVALID_PARAMETER_TYPE,
        f"{f.path} holds {f.kind.value} values; {shown(value)} is not one.",
        key=where,
    )


def stored_precision(moment: datetime) -> datetime:
    """``moment`` cut to the milliseconds MongoDB stores, so every store compares alike."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date or date-time as naive UTC at stored precision; ValueError otherwise
    (also for a moment that UTC cannot hold, such as year 1 with a positive offset)."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError as exc:
            raise ValueError(f"{text} is outside the years 1 to 9999 in UTC") from exc
    return stored_precision(parsed)


def literal(value: Any, where: str) -> Any:
    """``value`` checked to be a plain literal, and returned.

    No key inside it may start with ``$`` (MongoDB would read it as an operator: ``{"$ne":
    null}`` compared with ``options`` would match every job), and no number may be NaN or
    infinite (no stored value is either; JSON has neither).
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$"):
                raise ServiceError(
                    Code.INVALID_PARAMETER,
                    f"A value cannot hold the key {shown(key)}: keys starting with $ are"
                    " MongoDB operators, and values are literals.",
                    key=where,
                )
            literal(item, where)
    elif isinstance(value, list):
        for item in value:
            literal(item, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ServiceError(
            Code.INVALID_PARAMETER_TYPE, "NaN and infinity are not values.", key=where
        )
    return value


def coerce(f: Field, value: Any, where: str) -> Any:
    """``value`` checked and converted for comparing with field ``f``; None stays None (null)."""
    if value is None or f.kind in (Kind.ANY, Kind.OBJECT, Kind.ARRAY):
        return literal(value, where)
    if f.kind is Kind.STRING:
        if not isinstance(value, str):
            raise type_error(f, value, where)
        if f.choices and value not in f.choices:
            raise ServiceError(
                Code.INVALID_PARAMETER,
                f"{f.path} is one of {', '.join(f.choices)}; {shown(value)} is not.",
                key=where,
            )
        return value
    if f.kind is Kind.INT:
        if isinstance(value, bool) or not isinstance(literal(value, where), int | float):
            raise type_error(f, value, where)
        # Compared as numbers: 2.5 stays 2.5 so that "gt 2.5" matches 3 and not 2.
        return int(value) if float(value).is_integer() else float(value)
    if not isinstance(value, str):
        raise type_error(f, value, where)
    try:
        return parse_datetime(value)
    except ValueError as exc:
        raise ServiceError(
            Code.INVALID_PARAMETER_TYPE,
            f"{f.path} needs an ISO 8601 date-time such as 2024-05-01T13:00:00Z;"
            f" got {shown(value)}.",
            key=where,
        ) from exc
