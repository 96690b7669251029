"""The field schema: every queryable field and sub-field of a kind of document, with its type,
as its :class:`~spaceone_job.kinds.DocumentKind` describes it.

It decides which keys a filter, sort, ``only``, ``unwind`` or stat stage may name, and how a
value sent for that key is checked and converted. Nothing outside this table can reach the
database as a field path.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from spaceone_job import kinds
from spaceone_job.errors import Code, ServiceError, shown
from spaceone_job.store.model import Field, Kind

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,99}$")


class Schema:
    """The fields of one kind of document (jobs, job tasks): which paths a request may name
    and what each holds. Free-form objects (``options``) take any sub-path, of kind ANY."""

    def __init__(self, kind: kinds.DocumentKind) -> None:
        # Its noun, short form, id (where ``keyword`` searches) and top-level fields.
        self.kind = kind
        self._fields = {f.path: f for f in kind.fields}
        self._open = tuple(f.path for f in kind.fields if f.free_form)
        self.array_fields = tuple(p for p, f in self._fields.items() if f.kind is Kind.ARRAY)
        nested = [p for p in self._fields if "." in p and not p.startswith(self._open)]
        self._hint = ", ".join([f"a {kind.noun} field", *(f"{o}.*" for o in self._open), *nested])

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
